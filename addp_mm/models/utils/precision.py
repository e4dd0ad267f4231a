"""Which floating-point precision the frozen, inference-only parts of ADDP run in.

A part's ``precision`` is one of:

* ``'fp32'``: full precision, autocast disabled inside the part (exact);
* ``'bf16'`` / ``'fp16'``: autocast to that dtype inside the part, whatever the hardware (on a CPU
  without native bf16 this is emulated and much slower than fp32, but still correct);
* ``'auto'``: ``'bf16'`` where the hardware runs it natively -- a CUDA device that supports bf16,
  or a CPU with AVX512-BF16 or AMX tiles -- otherwise ``'fp32'``. It never picks a mode the
  hardware would emulate;
* ``None``: follow whatever autocast the caller has active (e.g. mmengine's ``AmpOptimWrapper``).

The frozen parts together (``ADDPNoiser(precision=MODE)``, ``tools/train.py --amp MODE``) run in
one of the modes of :data:`FROZEN_MODES`, each a precision for the VQ encoder, the VQ decoder and
the token predictor (:func:`frozen_precisions`):

* ``'fp32'``: all three in fp32: the release's numbers (its ``--fp32`` runs);
* ``'fast'``: the encoder in fp32 (the token ids are the targets), the decoder and the token
  predictor ``'auto'`` (bf16 where native): ours;
* ``'release'``: all three follow the caller's autocast, as the release runs its pretraining
  (``torch.cuda.amp.autocast`` around the whole model, the VQ encoder included);
* ``'auto'``: the fastest mode whose accuracy contract holds, measured side by side with the
  release (``tools/benchmark.py --rows pretrain``, docs/advanced_guides/performance.md):
  ``'release'`` where the caller runs an autocast (mixed-precision training: fp16 with the loss
  scaler on CUDA, as the release; bf16 on a CPU, where it is the fastest mode and ``'fast'`` under
  the same autocast is slower than the release), ``'fast'`` otherwise.

:func:`resolve_precision` and :func:`frozen_precisions` are the places that decide;
:func:`precision_context` turns a part's precision into an autocast context.
"""
from contextlib import nullcontext
from functools import lru_cache
from typing import NamedTuple, Optional, Union

import torch

from addp_mm.compat import autocast_available, autocast_dtype, autocast_enabled
from addp_mm.errors import UsageError

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
_ALIASES = {'float32': 'fp32', 'bfloat16': 'bf16', 'float16': 'fp16'}

FROZEN_MODES = ('fp32', 'fast', 'release', 'auto')
# (VQ encoder, VQ decoder, token predictor) of each fixed mode
_FROZEN_PARTS = {'fp32': ('fp32', 'fp32', 'fp32'), 'fast': ('fp32', 'auto', 'auto'),
                 'release': (None, None, None)}
# what 'auto' is under the caller's autocast and without one: the fastest mode whose contract
# holds, measured side by side (tools/benchmark.py --rows pretrain; docs/advanced_guides/performance.md)
AUTO_UNDER_AUTOCAST, AUTO_WITHOUT = 'release', 'fast'
# "the part's own setting" (the argument a call leaves out), distinct from None ("follow autocast")
OWN = 'own'

__all__ = ['PRECISIONS', 'check_precision', 'native_bf16', 'resolve_precision',
           'precision_context', 'precision_dtype', 'FROZEN_MODES', 'FrozenPrecisions',
           'check_frozen_mode', 'frozen_precisions', 'part_precision', 'active_dtype', 'OWN']


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


class FrozenPrecisions(NamedTuple):
    """The precision of each frozen part in a mode (values of a part's ``precision``)."""
    encode: Optional[str]
    decode: Optional[str]
    predictor: Optional[str]


def check_frozen_mode(mode: Optional[str], what: str = 'precision') -> Optional[str]:
    """Validate a frozen-parts mode (``None``: each part keeps its own setting)."""
    if mode is not None and mode not in FROZEN_MODES:
        raise UsageError(f'{what}={mode!r}: choose one of {FROZEN_MODES} (or None: each frozen '
                         'part keeps its own precision)')
    return mode


def frozen_precisions(mode: Optional[str], device: Union[str, torch.device]) -> FrozenPrecisions:
    """The precision of the VQ encoder, the VQ decoder and the token predictor in ``mode`` on
    ``device`` (``'auto'``: ``'release'`` under the caller's autocast on ``device``, else
    ``'fast'``); ``None``: each part's own setting (:data:`OWN`)."""
    mode = check_frozen_mode(mode)
    if mode is None:
        return FrozenPrecisions(OWN, OWN, OWN)
    if mode == 'auto':
        mode = AUTO_UNDER_AUTOCAST if active_dtype(None, device) is not None else AUTO_WITHOUT
    return FrozenPrecisions(*_FROZEN_PARTS[mode])


def part_precision(own: Optional[str], given: Optional[str] = OWN) -> Optional[str]:
    """``own`` (a part's setting) unless a call gives another precision (``given``, not
    :data:`OWN`)."""
    return own if given == OWN else check_precision(given)


def active_dtype(precision: Optional[str], device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The reduced dtype a part in ``precision`` computes in on ``device`` right now (``None``
    for float32): its own setting, or for ``None`` the caller's autocast."""
    device = torch.device(device)
    if precision is None:
        if not autocast_available(device.type) or not autocast_enabled(device.type):
            return None
        return autocast_dtype(device.type)
    return precision_dtype(precision, device)
