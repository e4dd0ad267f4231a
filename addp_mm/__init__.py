"""addp-mm: ADDP (Alternating Denoising Diffusion Process, ICLR 2024) for OpenMMLab.

``import addp_mm`` (or ``custom_imports=dict(imports=['addp_mm'])`` in a config) registers the
models (algorithms, backbone, necks, head, target generators), the mask schedule and the sampler
(``TASK_UTILS``), the pretraining runner, the hooks and the layer-decay optimizer constructor into
mmengine's root registries, which mmdet, mmseg and mmpretrain all search. ``addp_mm.checkpoint``
(reading, converting, loading weights), ``addp_mm.evaluation`` (FID / IS) and ``addp_mm.apis``
(generation to files) are plain functions. The encoders are also timm models
(``timm.create_model('addp_vit_base_patch16_256')``) and the model index is registered with
mmpretrain (``mmpretrain.list_models('*addp*')``, :mod:`addp_mm.model_index`).
"""
from .version import __version__
from .compat import check_versions

check_versions()  # one line naming the version, the supported range and the fix

from .checkpoint.safe_globals import register_safe_globals  # noqa: E402

register_safe_globals()  # mmengine resume / load_from on torch >= 2.6 (weights_only loading)

from .engine.config import memoize_config_reading  # noqa: E402

memoize_config_reading()  # a config's ``pkg::`` bases found and its text formatted once a process

from . import models  # noqa: E402,F401
from . import engine  # noqa: E402,F401
from . import datasets  # noqa: E402,F401
from . import evaluation  # noqa: E402,F401
from .model_index import register_with_mmpretrain  # noqa: E402

register_with_mmpretrain()

__all__ = ['__version__']
