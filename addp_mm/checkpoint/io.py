"""Reading a checkpoint file without running code.

    read_checkpoint(path, key)           the object in a local file: ``torch.load(weights_only=True)``
                                         with our allow-list (:mod:`.safe_globals`), ``.npz`` /
                                         ``.npy`` with ``np.load(allow_pickle=False)``; a missing
                                         file is a ``MissingFileError`` naming the config key, the
                                         path and, for a released file, where it comes from
                                         (:mod:`.sources`); any other pickled global is an
                                         :class:`UnsafeCheckpointError` naming it and
                                         :data:`TRUSTED_ENV` (the one way to lift it for a trusted
                                         file)
    unwrap_state_dict(obj)               the state dict inside ``{'state_dict': ...}`` (mmengine,
                                         taming), ``{'model': ...}`` (ADDP / MAGE / MAE releases) or
                                         a bare one; ``module.`` stripped

Nothing downloads: every file is a local path.
"""
import os
import os.path as osp
import pickle
import re
from typing import Dict, List, Mapping, Optional, Union

import numpy as np
import torch

from ..compat import HAS_SAFE_GLOBALS, restricted_pickle_module
from ..errors import UsageError
from .safe_globals import register_safe_globals, safe_globals
from .sources import require_file

__all__ = ['read_checkpoint', 'unwrap_state_dict', 'UnsafeCheckpointError', 'TRUSTED_ENV',
           'trusted_files', 'StateDict']

StateDict = Dict[str, torch.Tensor]


# the environment variable that lists files trusted to be unpickled in full (they may run code)
TRUSTED_ENV = 'ADDP_TRUSTED_CHECKPOINTS'


class UnsafeCheckpointError(UsageError, pickle.UnpicklingError):
    """A file holds a pickled object outside our allow-list (it could run code when loaded)."""


def trusted_files() -> List[str]:
    """The absolute paths listed in ``$ADDP_TRUSTED_CHECKPOINTS`` (``os.pathsep``-separated)."""
    value = os.environ.get(TRUSTED_ENV, '')
    return [osp.realpath(p) for p in value.split(os.pathsep) if p.strip()]


def _first_global(stream) -> Optional[str]:
    """The first global outside NumPy (whose array reconstructors an object array pickles first)
    that the pickle in ``stream`` would import (``pickletools``: nothing runs)."""
    import pickletools
    strings: List[Optional[str]] = []  # the strings pushed, in order (memo lookups included)
    memo: Dict[int, Optional[str]] = {}
    found: List[str] = []
    try:
        for op, arg, _ in pickletools.genops(stream):
            if op.name == 'GLOBAL':
                found.append(str(arg).replace(' ', '.'))
            elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                found.append(f'{strings[-2]}.{strings[-1]}')
            elif op.name == 'MEMOIZE':
                memo[len(memo)] = strings[-1] if strings else None
            elif op.name.endswith('PUT'):
                memo[arg] = strings[-1] if strings else None
            elif op.name.endswith('GET'):
                strings.append(memo.get(arg))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:
        pass
    return next((g for g in found if not g.startswith('numpy')), found[0] if found else None)


def _pickled_global(path) -> Optional[str]:
    """The first global a pickle file, or a pickled object array of a ``.npy`` / ``.npz``, would
    import (read, not run)."""
    import zipfile

    def from_npy(f):
        try:
            major, _ = np.lib.format.read_magic(f)
            (np.lib.format.read_array_header_1_0 if major == 1 else
             np.lib.format.read_array_header_2_0)(f, max_header_size=1 << 20)
        except Exception:
            return None
        return _first_global(f)

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                with z.open(name) as member:
                    found = from_npy(member) if name.endswith('.npy') else None
                if found:
                    return found
        return None
    with open(path, 'rb') as f:
        if f.read(6) == b'\x93NUMPY':
            f.seek(0)
            return from_npy(f)
        f.seek(0)
        return _first_global(f)


def _refusal(key: str, path, error: Exception) -> UnsafeCheckpointError:
    text = str(error)
    found = re.search(r'GLOBAL ([\w.]+)', text) or re.search(r"Unsupported global: ([\w.]+)", text)
    name = found.group(1) if found else _pickled_global(path)
    what = (f'it holds the pickled global {name}, which is not on the allow-list' if name
            else f'it cannot be read as weights only ({text.strip().splitlines()[0][:200]})'
            if text.strip() else 'it cannot be read as weights only')
    return UnsafeCheckpointError(
        f'{key} = {os.fspath(path)!r}: refused to load: {what}. Unpickling it could run code. Only '
        f'if you trust this file, allow it with the environment variable '
        f'{TRUSTED_ENV}={osp.realpath(path)} (several files: separated by {os.pathsep!r}).')


def read_checkpoint(path: Union[str, os.PathLike], key: str = 'checkpoint') -> Mapping:
    """The object in a local checkpoint file, read without running code.

    ``.npz`` / ``.npy`` files are read with ``np.load(allow_pickle=False)`` (a dict of arrays);
    everything else with ``torch.load(weights_only=True)`` and our allow-list. A file that holds
    any other pickled global is refused with an :class:`UnsafeCheckpointError` naming the global
    and :data:`TRUSTED_ENV`; a file listed there is unpickled in full.

    Args:
        path: the local file.
        key: what names the file in a config or on a command line, for the error message
            (e.g. ``'model.target_generator.tokenizer.checkpoint'``).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f'{key} = {path!r}: give the path of a checkpoint file')
    require_file(path, key)
    trusted = osp.realpath(path) in trusted_files()
    if os.fspath(path).endswith(('.npz', '.npy')):
        try:
            loaded = np.load(path, allow_pickle=trusted)
        except (ValueError, pickle.UnpicklingError) as e:
            if 'pickle' not in str(e):
                raise UsageError(f'{key} = {os.fspath(path)!r}: not a NumPy file ({e})') from None
            raise _refusal(key, path, e) from None
        if isinstance(loaded, np.ndarray):
            return {'array': loaded}
        with loaded:
            try:
                return {k: loaded[k] for k in loaded.files}
            except ValueError as e:  # an object array inside the archive
                raise _refusal(key, path, e) from None
    register_safe_globals()
    try:
        if trusted or HAS_SAFE_GLOBALS:
            obj = torch.load(path, map_location='cpu', weights_only=not trusted)
        else:  # torch < 2.4: the same allow-list through our restricted unpickler
            obj = torch.load(path, map_location='cpu', weights_only=False,
                             pickle_module=restricted_pickle_module(safe_globals()))
    except pickle.UnpicklingError as e:
        raise _refusal(key, path, e) from None
    if not isinstance(obj, Mapping):
        raise UsageError(f'{key} = {path!r} holds a {type(obj).__name__}, not a checkpoint dict')
    return obj


def unwrap_state_dict(ckpt: Mapping) -> StateDict:
    """The state dict inside a checkpoint: ``{'state_dict': ...}`` (mmengine, taming),
    ``{'model': ...}`` (ADDP/MAGE/MAE releases) or a plain state dict; ``module.`` is stripped."""
    sd = ckpt
    for key in ('state_dict', 'model'):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}
