"""The frozen target models of ADDP: the VQGAN tokenizer (pixels <-> code grid) and the MAGE token
predictor (masked code grid -> distribution over the codebook). ``ADDPNoiser`` holds and freezes
them; their checkpoint formats are converted in ``models/utils/checkpoint.py``."""
from .token_predictor import MAGETokenPredictor
from .vqgan import VectorQuantizer, VQGANTokenizer

__all__ = ['VQGANTokenizer', 'VectorQuantizer', 'MAGETokenPredictor']
