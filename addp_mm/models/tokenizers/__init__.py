"""The frozen parts of ADDP: the VQGAN tokenizer (pixels <-> code grid) and the MAGE token predictor."""
from .token_predictor import MAGETokenPredictor, load_mage_checkpoint, mage_state_dict
from .vqgan import (VQGAN_CHECKPOINT_HINT, VectorQuantizer, VQGANTokenizer, load_vqgan_state_dict,
                    vqgan_config_from_yaml)

__all__ = [
    'VQGANTokenizer', 'VectorQuantizer', 'load_vqgan_state_dict', 'vqgan_config_from_yaml',
    'VQGAN_CHECKPOINT_HINT', 'MAGETokenPredictor', 'mage_state_dict', 'load_mage_checkpoint'
]
