"""The speed work for the frozen, inference-only parts, behind one switch:
:func:`optimize_for_inference`.

The modules themselves are reference code. This turns a frozen part (a ``VQGANTokenizer``, a
``MAGETokenPredictor``, or any module holding them) into its inference form, in place, without
changing a parameter name or the state dict:

* VQGAN: the decoder's weights and activations channels-last (the layout oneDNN / cuDNN
  convolutions run fastest in); the encoder channels-last too on a CPU in a reduced-precision
  mode (its GroupNorms then sum in another order: latents move by ~3e-4, the token ids are kept;
  in fp32 it stays NCHW, the release's numbers); swish and residual sums in place; on a CPU each
  residual block's last convolution writes its sum straight into the block's input (one oneDNN
  convolution with a sum post-op, :func:`conv_add_`; bit-identical in fp32).
* ViT blocks (the token predictor): residual sums in place.

Every fast path applies only without gradients (a module that is trained keeps the reference
path), falls back to it where its kernel is missing (a later torch, another device), and has its
exactness test (tests/test_inference.py).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from addp_mm.compat import autocast_dtype, autocast_enabled, is_compiling

from ..layers.vit import TransformerBlock
from ..target_generators.vqgan_tokenizer import VQGANTokenizer, _Decoder, _Encoder
from .precision import resolve_precision

__all__ = ['optimize_for_inference', 'reference_form', 'conv_add_', 'FUSED_CONV_ADD']

# oneDNN's convolution with a sum post-op, as this torch build provides it (see conv_add_)
FUSED_CONV_ADD = (torch.backends.mkldnn.is_available()
                  and hasattr(torch.ops.mkldnn, '_convolution_pointwise_'))


def optimize_for_inference(module: Optional[nn.Module],
                           encoder_channels_last: Optional[bool] = None) -> Optional[nn.Module]:
    """Swap the inference forms into ``module`` (in place; returns it). Idempotent; ``None`` is
    passed through.

    Args:
        encoder_channels_last: the VQGAN encoder's layout: ``None`` (default) channels-last on a
            CPU when the tokenizer's ``precision`` is bf16 / fp16 (a fast mode), else NCHW;
            ``True`` / ``False`` force it.
    """
    if module is None:
        return None
    for m in list(module.modules()):
        if isinstance(m, VQGANTokenizer):
            if not isinstance(m, _FastVQGANTokenizer):
                m.__class__ = _FastVQGANTokenizer
                m.decoder.to(memory_format=torch.channels_last)
            m.encoder_channels_last = encoder_channels_last
        elif isinstance(m, _Encoder):
            m.__class__ = _FastEncoder
        elif isinstance(m, _Decoder):
            m.__class__ = _FastDecoder
        elif type(m) is TransformerBlock:
            m.__class__ = _FastTransformerBlock
    return module


def reference_form(module: Optional[nn.Module]) -> Optional[nn.Module]:
    """The inverse of :func:`optimize_for_inference` (in place; returns ``module``): the reference
    classes and the NCHW layout again (the benchmark's release-style reference, tests)."""
    if module is None:
        return None
    for m in list(module.modules()):
        for fast, plain in ((_FastVQGANTokenizer, VQGANTokenizer), (_FastEncoder, _Encoder),
                            (_FastDecoder, _Decoder), (_FastTransformerBlock, TransformerBlock)):
            if type(m) is fast:
                m.__class__ = plain
        if isinstance(m, VQGANTokenizer):
            m.decoder.to(memory_format=torch.contiguous_format)
    return module


# ----------------------------------------------------------------------------------------------
# in-place and fused arithmetic
# ----------------------------------------------------------------------------------------------
def _silu(x: torch.Tensor) -> torch.Tensor:
    """Swish, in place when no gradient is recorded."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


def _add_into(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
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


# ----------------------------------------------------------------------------------------------
# the inference forms
# ----------------------------------------------------------------------------------------------
def _residual_block(block, x: torch.Tensor) -> torch.Tensor:
    """A VQGAN residual block whose input ``x`` the caller owns (an activation of this pass):
    without gradients its result may take ``x``'s memory."""
    if torch.is_grad_enabled():
        return block(x)
    h = block.conv1(_silu(block.norm1(x)))
    h = block.dropout(_silu(block.norm2(h)))
    if block.in_channels != block.out_channels:
        h = block.conv2(h)
        return _add_into(block.nin_shortcut(h), h)
    out = conv_add_(block.conv2, h, x)
    return out if out is not None else _add_into(block.conv2(h), x)


class _FastEncoder(_Encoder):
    """The VQGAN encoder with in-place and fused residual sums: every activation inside a pass is
    the pass's own, so a residual sum may overwrite it."""
    run_block = staticmethod(_residual_block)
    activation = staticmethod(_silu)


class _FastDecoder(_Decoder):
    """The VQGAN decoder with in-place and fused residual sums (see :class:`_FastEncoder`)."""
    run_block = staticmethod(_residual_block)
    activation = staticmethod(_silu)


class _FastVQGANTokenizer(VQGANTokenizer):
    """``VQGANTokenizer`` in its inference layouts (see the module doc)."""
    encoder_channels_last: Optional[bool] = None

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return super().encode_latent(x.contiguous(memory_format=self.encoder_layout(x.device)))

    def encoder_layout(self, device) -> torch.memory_format:
        """The layout the encoder runs in on ``device`` (see :func:`optimize_for_inference`)."""
        channels_last = self.encoder_channels_last
        if channels_last is None:
            device = torch.device(device)
            channels_last = (device.type == 'cpu'
                             and resolve_precision(self.precision, device) in ('bf16', 'fp16'))
        return torch.channels_last if channels_last else torch.contiguous_format

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z.contiguous(memory_format=torch.channels_last))


class _FastTransformerBlock(TransformerBlock):
    """``TransformerBlock`` whose residual sums go in place into the fresh branch output when no
    gradient is recorded (``h + x == x + h`` exactly)."""

    @staticmethod
    def residual(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and h.dtype == x.dtype and h.shape == x.shape:
            return h.add_(x)
        return x + h
