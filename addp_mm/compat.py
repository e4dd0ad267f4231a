"""What this torch provides, detected once: the one place that tells torch versions apart.

addp-mm runs on torch 2.1 (what OpenMMLab ships prebuilt mmcv for) through the pinned 2.14. Every
feature that not all of them have is looked up here, by feature, not by version, and given a
fallback with the same meaning; the rest of the code calls these names and never tests a version.

- :func:`is_exporting`, :func:`is_compiling`: ``torch.compiler``'s probes (2.3+ / 2.5+), else
  torch._dynamo's, else ``False``.
- :func:`autocast_dtype`, :func:`autocast_enabled`, :func:`autocast_available`: per-device autocast
  state (``torch.get_autocast_dtype(device)`` is 2.4+; 2.1 has per-device functions).
- :func:`register_load_state_dict_pre_hook`, :func:`register_state_dict_post_hook`: the public
  module hooks (2.5+) or their private spelling with the same call signature.
- :data:`HAS_SAFE_GLOBALS` and :func:`restricted_pickle_module`: torch >= 2.4 extends its
  weights-only allow-list (``torch.serialization.add_safe_globals``); before that,
  :mod:`addp_mm.checkpoint.io` loads through a restricted unpickler of our own with the same
  allow-list (torch's own weights-only globals plus ours), never a plain unpickle.
"""
import _compat_pickle
import pickle
import re
import types
from typing import Callable, Dict, Iterable

import torch

__all__ = ['SUPPORTED', 'check_versions', 'is_exporting', 'is_compiling', 'autocast_dtype', 'autocast_enabled',
           'autocast_available', 'register_load_state_dict_pre_hook',
           'register_state_dict_post_hook', 'HAS_SAFE_GLOBALS', 'HAS_MMCV', 'restricted_pickle_module']


# the versions addp-mm runs with: [lowest, first unsupported); setup.cfg's install_requires
# states the same ranges, tools/install.sh installs the pins of requirements.txt inside them
SUPPORTED = {'torch': ('2.1', '2.15'), 'mmengine': ('0.10.4', '0.11'), 'mmcv': ('2.0.0', '2.3')}
FIXES = {
    'torch': 'install a torch in that range (e.g. pip install torch==2.1.2 torchvision==0.16.2, or '
             'bash tools/install.sh for the pinned stack)',
    'mmengine': 'pip install mmengine==0.10.7',
    'mmcv': 'install mmcv 2.1.0 (OpenMMLab\'s prebuilt wheels for torch 2.1: mim install '
            'mmcv==2.1.0; or bash tools/install.sh) or mmcv-lite 2.2.0 without the compiled ops',
}


def _release(version: str):
    """``'2.14.1+cu130'`` -> ``(2, 14, 1)`` (the numeric release part)."""
    parts = []
    for piece in version.split('+')[0].split('.'):
        digits = re.match(r'\d+', piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):  # 0rc1, 1a0: the rest is a pre-release tag
            break
    return tuple(parts)


def installed_version(package: str):
    """The version of an installed distribution (``mmcv`` also as ``mmcv-lite``), or ``None``."""
    from importlib import metadata
    for dist in (package, f'{package}-lite') if package == 'mmcv' else (package, ):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_versions(found: Dict[str, str] = None) -> None:
    """Refuse, at import, a torch / mmengine / mmcv outside :data:`SUPPORTED` with one line: the
    version found, the range and the fix. A package that is not installed is not checked (mmcv is
    optional for the backbone and pretraining)."""
    found = found if found is not None else {k: installed_version(k) for k in SUPPORTED}
    for package, (low, high) in SUPPORTED.items():
        version = found.get(package)
        if version is None:
            continue
        if not _release(low) <= _release(version) < _release(high):
            raise ImportError(f'addp_mm needs {package} >= {low}, < {high}; found {package} '
                              f'{version}: {FIXES[package]}')


def is_exporting() -> bool:
    """``True`` while ``torch.export`` (and the ONNX exporter built on it) traces the model: the
    code then keeps shape-dependent branches general (an input of another size takes the same
    graph) instead of specialising them to the traced size."""
    probe = getattr(torch.compiler, 'is_exporting', None)
    return bool(probe()) if probe is not None else False


def is_compiling() -> bool:
    """``True`` while torch.compile / torch.export trace."""
    probe = getattr(torch.compiler, 'is_compiling', None)
    if probe is None:
        dynamo = getattr(torch, '_dynamo', None)
        probe = getattr(dynamo, 'is_compiling', None)
    return bool(probe()) if probe is not None else False


def autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled() if device_type == 'cuda' else False


def autocast_dtype(device_type: str) -> torch.dtype:
    if hasattr(torch, 'get_autocast_dtype'):
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype()
    return torch.get_autocast_gpu_dtype()


def autocast_available(device_type: str) -> bool:
    probe = getattr(torch.amp, 'is_autocast_available', None)
    if probe is not None:
        return probe(device_type)
    return device_type in ('cpu', 'cuda', 'xpu', 'hpu')


def register_load_state_dict_pre_hook(module: torch.nn.Module, hook: Callable):
    """``hook(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors)``
    before ``module`` loads a state dict (every load path)."""
    public = getattr(module, 'register_load_state_dict_pre_hook', None)
    if public is not None:
        return public(hook)
    return module._register_load_state_dict_pre_hook(hook, with_module=True)


def register_state_dict_post_hook(module: torch.nn.Module, hook: Callable):
    """``hook(module, state_dict, prefix, local_metadata)`` after ``module.state_dict()`` (it edits
    ``state_dict`` in place)."""
    public = getattr(module, 'register_state_dict_post_hook', None)
    if public is not None:
        return public(hook)

    def edit_in_place(*args):  # the private hook's return value would replace the state dict
        hook(*args)
    return module._register_state_dict_hook(edit_in_place)


HAS_SAFE_GLOBALS = hasattr(torch.serialization, 'add_safe_globals')
# mmcv (or mmcv-lite): the data pipelines and mmdet's neck need it; the models, pretraining and
# generation run without it (a bare GPU machine with torch, timm and mmengine)
try:
    import mmcv  # noqa: F401
    HAS_MMCV = True
except ImportError:
    HAS_MMCV = False


def _torch_allowed_globals() -> Dict[str, object]:
    """torch's own weights-only allow-list (tensor rebuilders, storages, dtypes, containers)."""
    from torch import _weights_only_unpickler as wou
    return dict(wou._get_allowed_globals())


def restricted_pickle_module(extra: Iterable) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load(weights_only=False, pickle_module=...)`` whose
    unpickler resolves only torch's weights-only globals and ``extra`` (types or functions, or
    ``(function, 'module.name')`` pairs as ``torch.serialization.add_safe_globals`` takes them);
    any other global raises ``pickle.UnpicklingError`` naming it, as torch's own refusal does."""
    import codecs
    allowed = _torch_allowed_globals()
    allowed.setdefault('_codecs.encode', codecs.encode)  # NumPy's pickles rebuild bytes with it
    for item in extra:
        obj, name = item if isinstance(item, tuple) else (item, f'{item.__module__}.{item.__qualname__}')
        allowed[name] = obj

    class RestrictedUnpickler(pickle.Unpickler):

        def find_class(self, module_name: str, name: str):
            # protocol 2 (torch.save's) names Python 2 modules: __builtin__.getattr, copy_reg...
            module_name, name = _compat_pickle.NAME_MAPPING.get((module_name, name), (module_name, name))
            module_name = _compat_pickle.IMPORT_MAPPING.get(module_name, module_name)
            full = f'{module_name}.{name}'
            if full in allowed:
                return allowed[full]
            raise pickle.UnpicklingError(f'Weights only load failed: Unsupported global: GLOBAL {full}')

    module = types.ModuleType('addp_mm_restricted_pickle')
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kw: RestrictedUnpickler(file, **kw).load()
    module.UnpicklingError = pickle.UnpicklingError
    module.__dict__.update({k: getattr(pickle, k) for k in ('HIGHEST_PROTOCOL', 'DEFAULT_PROTOCOL')})
    return module
