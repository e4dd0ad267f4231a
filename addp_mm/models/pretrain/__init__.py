from .addp import ADDP, NonFiniteLossError
from .decoder import (RELEASE_DECODER_DROPPED, RELEASE_DECODER_KEYS, ADDPDecoder,
                      release_decoder_state_dict)
from .loss import ADDPSoftTargetLoss, soft_target_cross_entropy
from .mask_schedule import MaskSchedule

__all__ = [
    'ADDP', 'NonFiniteLossError', 'ADDPDecoder', 'release_decoder_state_dict', 'RELEASE_DECODER_KEYS',
    'RELEASE_DECODER_DROPPED', 'ADDPSoftTargetLoss', 'soft_target_cross_entropy', 'MaskSchedule'
]
