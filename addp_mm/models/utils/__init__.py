"""Checkpoint reading and format conversion (:mod:`.checkpoint`), the ``weights_only`` allow-list
(:mod:`.safe_globals`) and image helpers (:mod:`.image`)."""
from .checkpoint import (RELEASE_DECODER_DROPPED, RELEASE_DECODER_KEYS, TRUSTED_ENV, WEIGHT_SOURCES,
                         CheckpointMismatchError, UnsafeCheckpointError, addp_state_dict,
                         encoder_state_dict, finetune_classifier_state_dict, load_converted,
                         load_state_dict_checked, mage_state_dict, model_state_dict,
                         read_checkpoint, release_decoder_state_dict, summarise_keys,
                         unwrap_state_dict, vqgan_state_dict)
from .image import save_image, to_uint8
from .safe_globals import register_safe_globals, safe_globals

__all__ = [
    'read_checkpoint', 'unwrap_state_dict', 'load_converted', 'WEIGHT_SOURCES',
    'encoder_state_dict', 'addp_state_dict', 'finetune_classifier_state_dict',
    'release_decoder_state_dict', 'RELEASE_DECODER_KEYS', 'RELEASE_DECODER_DROPPED',
    'mage_state_dict', 'vqgan_state_dict', 'register_safe_globals', 'safe_globals', 'save_image',
    'to_uint8', 'TRUSTED_ENV', 'UnsafeCheckpointError', 'CheckpointMismatchError',
    'model_state_dict', 'load_state_dict_checked', 'summarise_keys'
]
