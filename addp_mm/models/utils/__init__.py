"""Helpers of the models: precision of the frozen parts (:mod:`.precision`), the inference
speed-ups applied by one switch (:mod:`.inference`), masking rules (:mod:`.masking`) and
generated images (:mod:`.image`). The checkpoint helpers that lived here moved to
:mod:`addp_mm.checkpoint` (re-exported below for older imports)."""
from addp_mm.checkpoint import (RELEASE_DECODER_DROPPED, RELEASE_DECODER_KEYS, TRUSTED_ENV,  # noqa: F401
                                WEIGHT_SOURCES, CheckpointMismatchError, UnsafeCheckpointError,
                                addp_state_dict, encoder_state_dict, finetune_classifier_state_dict,
                                mage_state_dict, model_state_dict, read_checkpoint,
                                register_safe_globals, release_decoder_state_dict, safe_globals,
                                summarise_keys, unwrap_state_dict, vqgan_state_dict)
from .image import save_image, to_uint8

__all__ = ['save_image', 'to_uint8']
