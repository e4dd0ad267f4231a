"""Datasets and transforms of addp-mm. Pretraining reads image folders with mmpretrain's
``CustomDataset(with_label=False)`` and ImageNet with its ``ImageNet``; ``LoadImageChecked``
loads any image of such a folder or names the bad file."""
from .transforms import BadImageError, LoadImageChecked

__all__ = ['LoadImageChecked', 'BadImageError']
