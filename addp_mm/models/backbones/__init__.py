"""The ADDP encoder as an OpenMMLab backbone (``ADDPViT``), for mmdet, mmseg and mmpretrain, and
as timm models (``addp_vit_base_patch16_256``, ``addp_vit_large_patch16_256``)."""
from .addp_vit import ADDPViT
from .timm_addp_vit import TimmADDPViT

__all__ = ['ADDPViT', 'TimmADDPViT']
