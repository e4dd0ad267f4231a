"""``CPUAutocastOptimWrapper``: mixed precision on a CPU that computes bf16 natively.

mmengine's ``AmpOptimWrapper`` runs on GPUs (and NPU/MLU/MUSA) only. On a CPU with AVX512-BF16 or
AMX, ``tools/train.py`` runs an AMP config with this wrapper instead (and says so); on a CPU
without them torch emulates bf16, many times slower than fp32, and the tool stops with the fix.
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward passes run under ``torch.autocast('cpu', dtype)``.

    bf16 keeps fp32's exponent range, so there is no loss scaling; parameters, gradients and the
    optimizer state stay fp32.

    Args:
        dtype (str | torch.dtype): the autocast type. Defaults to ``'bfloat16'``.
        **kwargs: the arguments of ``OptimWrapper``.
    """

    def __init__(self, *args, dtype='bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
