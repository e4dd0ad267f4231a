"""Allow-list, for ``torch.load(weights_only=True)``, exactly the non-tensor types our checkpoints hold.

torch >= 2.6 loads with ``weights_only=True``. mmengine 0.10.7 checkpoints carry the message hub's
``HistoryBuffer`` objects (numpy arrays and ``getattr(HistoryBuffer, 'mean')``, ... inside, see
:func:`history_buffer_statistic`) and the released ADDP checkpoints an ``argparse.Namespace``;
without this, ``--resume`` and ``load_from`` fail. We allow-list those types instead of turning
``weights_only`` off, so untrusted pickles are still refused. Nothing of mmengine is patched.
"""
import argparse
import pickle

import numpy as np
import torch

from addp_mm.compat import HAS_SAFE_GLOBALS


def _numpy_types():
    types = [np.ndarray, np.dtype]
    try:  # numpy >= 1.25 keeps the reconstructor in numpy.core.multiarray / numpy._core.multiarray
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import _reconstruct
    # scalar types and their dtype classes (np.dtypes.Float64DType, ...), as pickled by numpy 2
    for name in ('float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool_'):
        scalar = getattr(np, name)
        types.append(scalar)
        types.append(type(np.dtype(scalar)))
    try:
        from numpy._core.multiarray import scalar as np_scalar
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import scalar as np_scalar
    # numpy 1 pickles arrays and scalars as numpy.core.multiarray._reconstruct / .scalar, numpy 2
    # as numpy._core.multiarray.*: both spellings, so that a checkpoint written on the torch 2.1
    # stack (numpy 1.26) loads on the pinned one (numpy 2) and back
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        types += [(_reconstruct, f'{module}._reconstruct'), (np_scalar, f'{module}.scalar')]
    return types


def safe_globals():
    """The allow-listed types (for ``torch.serialization.safe_globals(...)``), and
    :func:`history_buffer_statistic` in place of ``builtins.getattr``."""
    from mmengine.logging import HistoryBuffer
    return [argparse.Namespace, HistoryBuffer, (history_buffer_statistic, 'builtins.getattr')] + _numpy_types()


# the statistics mmengine's ``HistoryBuffer`` registers itself (``_set_default_statistics``)
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_statistic(owner, name: str):
    """Resolve exactly what an mmengine checkpoint pickles besides tensors and arrays.

    ``HistoryBuffer.__getstate__`` saves its table of statistics functions; the default ones are
    methods of ``HistoryBuffer`` and pickle (protocol 2, torch's) as ``getattr(HistoryBuffer,
    'min')``, ... Allow-listing ``builtins.getattr`` would let a file call ``getattr`` on anything,
    so a weights-only load sees this function under that name instead: it returns those four
    methods and refuses every other use. Custom statistics that other code registered are pickled
    by reference as usual (mmengine's ``__getstate__`` is left alone), so they survive a save; a
    weights-only load refuses them by name unless that code allow-lists its function.
    """
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights-only load refused getattr({getattr(owner, "__name__", type(owner).__name__)}, {name!r}): '
        f'only HistoryBuffer.{"/".join(HISTORY_BUFFER_STATISTICS)} are allowed in a checkpoint '
        '(load a trusted file with weights_only=False)')


def register_safe_globals() -> None:
    """Add :func:`safe_globals` to torch's process-wide allow-list (idempotent, cheap).

    Called at import and again before each of our loads: leaving a
    ``torch.serialization.safe_globals([...])`` block elsewhere removes its types from the list.
    """
    if HAS_SAFE_GLOBALS:  # before torch 2.4 checkpoint.io loads through our restricted unpickler
        torch.serialization.add_safe_globals(safe_globals())
