"""Allow-list, for ``torch.load(weights_only=True)``, exactly the non-tensor types our checkpoints hold.

torch >= 2.6 loads with ``weights_only=True``. mmengine 0.10.7 checkpoints carry the message hub's
``HistoryBuffer`` objects (numpy arrays inside) and the released ADDP checkpoints an
``argparse.Namespace``; without this, ``--resume`` and ``load_from`` fail. We allow-list those types
instead of turning ``weights_only`` off, so untrusted pickles are still refused.
"""
import argparse

import numpy as np
import torch


def _numpy_types():
    types = [np.ndarray, np.dtype]
    try:  # numpy >= 1.25 keeps the reconstructor in numpy.core.multiarray / numpy._core.multiarray
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import _reconstruct
    types.append(_reconstruct)
    # scalar types and their dtype classes (np.dtypes.Float64DType, ...), as pickled by numpy 2
    for name in ('float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool_'):
        scalar = getattr(np, name)
        types.append(scalar)
        types.append(type(np.dtype(scalar)))
    try:
        from numpy._core.multiarray import scalar as np_scalar
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import scalar as np_scalar
    types.append(np_scalar)
    return types


def safe_globals():
    """The allow-listed types (for ``torch.serialization.safe_globals(...)``)."""
    from mmengine.logging import HistoryBuffer
    return [argparse.Namespace, HistoryBuffer] + _numpy_types()


def _history_buffer_state(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the table of statistics functions.

    mmengine pickles that table as ``getattr(HistoryBuffer, 'min')``, ..., which a weights-only load
    refuses (it would need ``builtins.getattr`` allow-listed). The table is class-level and
    ``HistoryBuffer.__setstate__`` rebuilds the default entries, so nothing is lost; our checkpoints
    then hold only the types listed in :func:`safe_globals`.
    """
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def register_safe_globals() -> None:
    """Add :func:`safe_globals` to torch's process-wide allow-list (idempotent, cheap).

    Called at import and again before each of our loads: leaving a
    ``torch.serialization.safe_globals([...])`` block elsewhere removes its types from the list.
    """
    torch.serialization.add_safe_globals(safe_globals())
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state
