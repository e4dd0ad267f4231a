"""The ADDP encoder as an OpenMMLab backbone (``ADDPViT``), for mmdet, mmseg and mmpretrain."""
from .addp_vit import ADDPViT

__all__ = ['ADDPViT']
