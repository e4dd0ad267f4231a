"""Unconditional generation with a pretrained ADDP model (spec section 3)."""
from .sampler import ADDPSampler, GenerationGeometry, to_uint8, unwrap_model

__all__ = ['ADDPSampler', 'GenerationGeometry', 'to_uint8', 'unwrap_model']
