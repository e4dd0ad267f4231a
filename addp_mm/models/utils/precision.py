"""Which floating-point precision the frozen, inference-only parts of ADDP run in.

``precision`` is one of:

* ``'fp32'``: full precision, autocast disabled inside the part (exact);
* ``'bf16'`` / ``'fp16'``: autocast to that dtype inside the part, whatever the hardware (on a CPU
  without native bf16 this is emulated and much slower than fp32, but still correct);
* ``'auto'``: ``'bf16'`` where the hardware runs it natively -- a CUDA device that supports bf16,
  or a CPU with AVX512-BF16 or AMX tiles -- otherwise ``'fp32'``. It never picks a mode the
  hardware would emulate;
* ``None``: follow whatever autocast the caller has active (e.g. mmengine's ``AmpOptimWrapper``).

:func:`resolve_precision` is the one place that decides; :func:`precision_context` turns the
result into an autocast context.
"""
from contextlib import nullcontext
from functools import lru_cache
from typing import Optional, Union

import torch

from addp_mm.compat import autocast_available
from addp_mm.errors import UsageError

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
_ALIASES = {'float32': 'fp32', 'bfloat16': 'bf16', 'float16': 'fp16'}

__all__ = ['PRECISIONS', 'check_precision', 'native_bf16', 'resolve_precision',
           'precision_context', 'precision_dtype']


def check_precision(precision: Optional[str], what: str = 'precision') -> Optional[str]:
    """Validate a precision setting (``None`` or one of :data:`PRECISIONS`, or a dtype alias)."""
    if precision is None:
        return None
    p = _ALIASES.get(str(precision), str(precision))
    if p not in PRECISIONS:
        raise UsageError(f"{what}={precision!r}: choose one of {PRECISIONS} (or None to follow the "
                         "caller's autocast)")
    return p


def native_bf16(device: Union[str, torch.device]) -> bool:
    """Whether ``device`` computes bf16 natively (not emulated in fp32 arithmetic).

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: AVX512-BF16 or AMX tiles, as reported by torch's
    own cpuinfo probes (``torch.backends.cpu.get_cpu_capability()`` only says ``'AVX512'`` or
    ``'AVX2'``, which does not tell whether bf16 is native). Other devices: False.
    """
    device = torch.device(device)
    return _native_bf16(device.type, device.index)


@lru_cache(maxsize=None)
def _native_bf16(device_type: str, index: Optional[int]) -> bool:
    if device_type == 'cuda':
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == 'cpu':
        probes = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def resolve_precision(precision: Optional[str], device: Union[str, torch.device]) -> Optional[str]:
    """``'auto'`` -> ``'bf16'`` where :func:`native_bf16`, else ``'fp32'``; other values as given."""
    precision = check_precision(precision)
    if precision == 'auto':
        return 'bf16' if native_bf16(device) else 'fp32'
    return precision


def precision_dtype(precision: Optional[str], device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The autocast dtype of a precision setting on ``device`` (``None`` for fp32 / inherit)."""
    return DTYPES.get(resolve_precision(precision, device))


def precision_context(precision: Optional[str], device: Union[str, torch.device]):
    """An autocast context for ``precision`` on ``device``: disabled for ``'fp32'``, to bf16/fp16
    for those, and a no-op for ``None`` (the caller's autocast applies) and on devices without
    autocast (``meta``)."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if resolved is None or not autocast_available(device.type):  # e.g. 'meta'
        return nullcontext()
    if resolved == 'fp32':
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=DTYPES[resolved])
