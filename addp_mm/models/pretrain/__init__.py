"""The ADDP pretraining algorithm: the frozen noising process (``ADDPNoiser`` with its
``MaskSchedule``), the token decoder, the soft-target loss and the ``ADDP`` model that chains them."""
from .addp import ADDP, NonFiniteLossError
from .decoder import ADDPDecoder
from .loss import ADDPSoftTargetLoss, soft_target_cross_entropy
from .mask_schedule import MaskDraw, MaskSchedule
from .noiser import ADDPNoiser

__all__ = [
    'ADDP', 'NonFiniteLossError', 'ADDPNoiser', 'ADDPDecoder', 'ADDPSoftTargetLoss',
    'soft_target_cross_entropy', 'MaskSchedule', 'MaskDraw'
]
