"""``SimpleFPN``: ViTDet's simple feature pyramid for a plain ViT (and ``LN2d``)."""
from .simple_fpn import SimpleFPN

__all__ = ['SimpleFPN']
