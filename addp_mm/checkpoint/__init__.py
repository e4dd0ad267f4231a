"""Checkpoints: where the files come from (:mod:`.sources`), reading one without running code
(:mod:`.io`, with the ``weights_only`` allow-list of :mod:`.safe_globals`), converting a foreign
format (:mod:`.converters`: pure functions) and the one load function with its policy and
report (:mod:`.load`)."""
from .converters import (CHECKPOINT_KINDS, ENCODER_KEYS, RELEASE_DECODER_DROPPED,
                         RELEASE_DECODER_KEYS, addp_state_dict, checkpoint_kind,
                         encoder_state_dict, finetune_classifier_state_dict, mage_state_dict,
                         model_state_dict, release_decoder_state_dict, rename_encoder_keys,
                         timm_vit_state_dict, vqgan_state_dict)
from .io import TRUSTED_ENV, UnsafeCheckpointError, read_checkpoint, trusted_files, unwrap_state_dict
from .load import (COMPLETE, ENCODER, PARTIAL, STRICT, CheckpointKindError,
                   CheckpointMismatchError, LoadPolicy, LoadReport, load_weights,
                   require_full_addp_checkpoint, summarise_keys)
from .safe_globals import register_safe_globals, safe_globals
from .sources import RELEASE_FILES, WEIGHT_SOURCES, missing_file, require_file, source_of

__all__ = [
    'WEIGHT_SOURCES', 'RELEASE_FILES', 'source_of', 'missing_file', 'require_file',
    'read_checkpoint',
    'unwrap_state_dict', 'UnsafeCheckpointError', 'TRUSTED_ENV', 'trusted_files',
    'register_safe_globals', 'safe_globals', 'encoder_state_dict', 'rename_encoder_keys',
    'finetune_classifier_state_dict', 'release_decoder_state_dict', 'addp_state_dict',
    'mage_state_dict', 'vqgan_state_dict', 'timm_vit_state_dict', 'model_state_dict', 'checkpoint_kind',
    'CHECKPOINT_KINDS', 'ENCODER_KEYS', 'RELEASE_DECODER_KEYS', 'RELEASE_DECODER_DROPPED',
    'load_weights', 'LoadPolicy', 'LoadReport', 'STRICT', 'COMPLETE', 'PARTIAL', 'ENCODER',
    'CheckpointMismatchError', 'CheckpointKindError', 'require_full_addp_checkpoint',
    'summarise_keys'
]
