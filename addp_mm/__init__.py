"""addp-mm: ADDP (Alternating Denoising Diffusion Process, ICLR 2024) for OpenMMLab.

``import addp_mm`` (or ``custom_imports=dict(imports=['addp_mm'])`` in a config) registers the
models, runner, hooks, optimizer constructor, metrics and datasets into mmengine's root registries,
which mmdet, mmseg and mmpretrain all search.
"""
from .version import __version__
from .utils import register_safe_globals

register_safe_globals()  # mmengine resume / load_from on torch >= 2.6 (weights_only loading)

from . import models  # noqa: E402,F401
from . import engine  # noqa: E402,F401
from . import datasets  # noqa: E402,F401
from . import evaluation  # noqa: E402,F401

__all__ = ['__version__']
