"""Unconditional generation with a pretrained ADDP model: ``ADDPSampler`` (alternating denoising)."""
from .sampler import ADDPSampler, GenerationGeometry, build_sampler, unwrap_model

__all__ = ['ADDPSampler', 'GenerationGeometry', 'build_sampler', 'unwrap_model']
