"""Generation: ``ADDPSampler``, unconditional sampling by alternating denoising with a pretrained
``ADDP``."""
from .addp_sampler import ADDPSampler, GenerationGeometry, build_sampler, unwrap_model

__all__ = ['ADDPSampler', 'GenerationGeometry', 'build_sampler', 'unwrap_model']
