"""Target generators (frozen, inference-only): the ``VQGANTokenizer`` (pixels <-> code grid), the
``MAGETokenPredictor`` (masked code grid -> distribution over the codebook), the
``MaskSchedule`` (which diffusion step a batch trains) and ``ADDPNoiser``, which chains them into
the noised pixels and targets of a pretraining step."""
from .addp_noiser import ADDPNoiser
from .mage_token_predictor import MAGETokenPredictor
from .mask_schedule import MaskDraw, MaskSchedule
from .vqgan_tokenizer import VQGANTokenizer

__all__ = ['ADDPNoiser', 'VQGANTokenizer', 'MAGETokenPredictor',
           'MaskSchedule', 'MaskDraw']
