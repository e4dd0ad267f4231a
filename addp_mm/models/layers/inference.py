"""The one switch for the speed work of the frozen, inference-only parts:
:func:`optimize_for_inference` and its inverse :func:`reference_form`.

The modules are reference code. Each fast form is a subclass of the module it speeds up, written
beside it and registered here with :func:`inference_form_of`; the switch swaps the classes of a
module's children in place, without changing a parameter name or the state dict:

* VQGAN encoder / decoder (:mod:`.vqgan`): swish and residual sums in place; on a CPU each
  residual block's last convolution writes its sum straight into the block's input (one oneDNN
  convolution with a sum post-op, :func:`conv_add_`; bit-identical in fp32);
* the tokenizer (``VQGANTokenizer``): its decoder channels-last, its encoder channels-last on a
  CPU in a reduced-precision mode (latents move by ~3e-4, token ids kept; fp32 stays NCHW);
* ViT blocks (:mod:`.vit`, the token predictor): residual sums in place.

Who applies it is a constructor flag of the modules that hold frozen parts (``ADDPNoiser`` and
``MAGETokenTrainer``: ``inference_form=True``). Every fast path applies only without gradients (a
module that is trained keeps the reference path), falls back to the reference path where its
kernel is missing (a later torch, another device), and has its exactness test
(tests/test_inference.py).
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from addp_mm.compat import autocast_dtype, autocast_enabled, is_compiling

__all__ = ['optimize_for_inference', 'reference_form', 'inference_form_of', 'conv_add_',
           'FUSED_CONV_ADD', 'silu_', 'add_into_']

# reference class -> its inference form (filled by @inference_form_of beside each module)
_FORMS: Dict[type, type] = {}

# oneDNN's convolution with a sum post-op, as this torch build provides it (see conv_add_)
FUSED_CONV_ADD = (torch.backends.mkldnn.is_available()
                  and hasattr(torch.ops.mkldnn, '_convolution_pointwise_'))


def inference_form_of(reference: type):
    """Class decorator: the decorated subclass is the inference form of ``reference``. It may
    define ``enter_inference_form(self, **options)`` (run after the swap, e.g. to change a
    layout) and ``leave_inference_form(self)`` (run before the swap back)."""
    def register(fast: type) -> type:
        if not issubclass(fast, reference):
            raise TypeError(f'{fast.__name__} must subclass {reference.__name__}')
        _FORMS[reference] = fast
        return fast
    return register


def optimize_for_inference(module: Optional[nn.Module], **options) -> Optional[nn.Module]:
    """Swap the inference forms into ``module`` and its children (in place; returns it).
    Idempotent; ``None`` is passed through.

    Options reach the forms' ``enter_inference_form``: ``encoder_channels_last`` (the
    tokenizer's): ``None`` (default) channels-last on a CPU when the tokenizer's ``precision`` is
    bf16 / fp16 (a fast mode), else NCHW; ``True`` / ``False`` force it.
    """
    if module is None:
        return None
    fast_forms = set(_FORMS.values())
    for m in list(module.modules()):
        fast = _FORMS.get(type(m))
        if fast is not None:
            m.__class__ = fast
        if type(m) in fast_forms and hasattr(m, 'enter_inference_form'):
            m.enter_inference_form(**options)
    return module


def reference_form(module: Optional[nn.Module]) -> Optional[nn.Module]:
    """The inverse of :func:`optimize_for_inference` (in place; returns ``module``): the reference
    classes and layouts again (the benchmark's release-style reference, tests)."""
    if module is None:
        return None
    plain = {fast: ref for ref, fast in _FORMS.items()}
    for m in list(module.modules()):
        if type(m) in plain:
            if hasattr(m, 'leave_inference_form'):
                m.leave_inference_form()
            m.__class__ = plain[type(m)]
    return module


# ----------------------------------------------------------------------------------------------
# in-place and fused arithmetic, for the forms
# ----------------------------------------------------------------------------------------------
def silu_(x: torch.Tensor) -> torch.Tensor:
    """Swish, in place when no gradient is recorded."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


def add_into_(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``h + x``, in place into ``h`` (a fresh activation) when no gradient is recorded."""
    return h.add_(x) if not torch.is_grad_enabled() else h + x


def conv_add_(conv: nn.Conv2d, h: torch.Tensor, x: torch.Tensor) -> Optional[torch.Tensor]:
    """``x += conv(h)`` as one oneDNN convolution with a sum post-op, or ``None`` where that does
    not apply (then the caller computes ``conv(h) + x``).

    Inference on a CPU only: the convolution writes straight into the residual input ``x``
    instead of a fresh output, which saves the separate addition and a fresh large allocation.
    In float32 the result is bit-identical to ``conv(h) + x``; under bf16 autocast the sum is
    taken before the output is rounded. It uses the convolution-with-post-op kernel PyTorch keeps
    for inductor's CPU fusions (``torch.ops.mkldnn._convolution_pointwise_``), guarded: if the op
    is missing, the inputs are not plain CPU float32 / bf16 tensors of matching dtype, shape and
    layout, gradients are recorded or the module is being compiled, nothing is fused.
    """
    if (not FUSED_CONV_ADD or torch.is_grad_enabled() or h.device.type != 'cpu'
            or is_compiling()):
        return None
    dtype = autocast_dtype('cpu') if autocast_enabled('cpu') else h.dtype
    if dtype not in (torch.float32, torch.bfloat16) or x.dtype != dtype:
        return None
    out_shape = (h.shape[0], conv.out_channels, x.shape[2], x.shape[3])
    if tuple(x.shape) != out_shape or conv.padding_mode != 'zeros' or isinstance(conv.padding, str):
        return None
    # the sum is written in x's layout: x must be dense in the layout the convolution runs in
    channels_last = any(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
                        for t in (h, conv.weight))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if not x.is_contiguous(memory_format=layout):
        return None
    w, b = conv.weight.to(dtype), None if conv.bias is None else conv.bias.to(dtype)
    try:
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            x, h.to(dtype), w, b, list(conv.padding), list(conv.stride), list(conv.dilation),
            conv.groups, 'add', 1.0, None, [], None)
    except (RuntimeError, TypeError):  # the private op changed: the reference path
        return None
