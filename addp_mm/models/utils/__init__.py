"""Helpers of the models: precision of the frozen parts (:mod:`.precision`), masking rules
(:mod:`.masking`), frozen parts kept out of checkpoints (:mod:`.frozen`) and generated images
(:mod:`.image`)."""
from .image import save_image, to_uint8

__all__ = ['save_image', 'to_uint8']
