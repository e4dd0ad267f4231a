"""Datasets and transforms of addp-mm. Pretraining reads image folders with mmpretrain's
``CustomDataset(with_label=False)`` and ImageNet with its ``ImageNet``; ``LoadImageChecked``
loads any image of such a folder or names the bad file."""
from addp_mm.compat import HAS_MMCV

__all__ = []
if HAS_MMCV:  # the data pipelines are mmcv's (a bare torch + mmengine machine has none)
    from .transforms import BadImageError, LoadImageChecked  # noqa: F401
    __all__ += ['LoadImageChecked', 'BadImageError']
