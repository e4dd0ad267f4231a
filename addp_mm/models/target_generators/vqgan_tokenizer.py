"""The frozen VQ tokenizer of ADDP: MAGE's PyTorch port of the MaskGIT VQGAN (its layers:
:mod:`addp_mm.models.layers.vqgan`; ``attn_resolutions`` is accepted for config compatibility and
ignored, as in the release).

MAGE's ``vqgan_jax_strongaug.ckpt`` (``{'state_dict': ...}``) and the ``vqgan.*`` entries of the
released ADDP / MAGE checkpoints load strictly. Pixels are consumed as RGB in [0, 1] without any
normalisation and :meth:`VQGANTokenizer.decode` returns unclamped pixels in the same space.

This is the reference code. Its inference form (channels-last layouts, at the end of this file)
is swapped in by :func:`~addp_mm.models.layers.inference.optimize_for_inference` where the
tokenizer is frozen (``ADDPNoiser``, ``MAGETokenTrainer``: ``inference_form=True``); ``precision``
selects a reduced precision for the decoder (:mod:`addp_mm.models.utils.precision`).
"""
import os
from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS

from addp_mm.checkpoint import STRICT, load_weights, vqgan_state_dict
from addp_mm.errors import UsageError

from ..layers.inference import inference_form_of
from ..layers.vqgan import VectorQuantizer, VQGANDecoder, VQGANEncoder, check_vqgan_channels
from ..utils.precision import (OWN, active_dtype, check_precision, part_precision,
                               precision_context, resolve_precision)

__all__ = ['VQGANTokenizer']


@MODELS.register_module()
class VQGANTokenizer(nn.Module):
    """VQGAN tokenizer (MAGE / ADDP layout); ADDP keeps it frozen inside ``ADDPNoiser``.

    Args:
        ch, ch_mult, num_res_blocks: base width, per-level multipliers, residual blocks per level.
        attn_resolutions: accepted for config compatibility and ignored (no attention layers).
        z_channels: encoder output channels; must equal ``embed_dim`` (no quant_conv).
        n_embed, embed_dim: codebook size and code dimension.
        resolution: nominal image size (informational; any multiple of the downsample factor works).
        in_channels, out_ch: image channels in / out.
        dropout: dropout of the residual blocks (inactive inside ``ADDPNoiser``, which keeps the
            tokenizer in eval mode).
        checkpoint: local file (or loaded checkpoint / state dict) that :meth:`init_weights`
            loads strictly, in any layout :func:`~addp_mm.checkpoint.vqgan_state_dict` reads.
            The constructor reads no file. ``None`` keeps random weights (demos and tests).
        precision: precision of the decoder (:meth:`decode`): ``'fp32'``, ``'bf16'``, ``'fp16'``,
            ``'auto'`` (bf16 where the hardware runs it natively, else fp32) or ``None`` (follow
            the caller's autocast), see :mod:`addp_mm.models.utils.precision`. :meth:`decode`
            returns the dtype of its input.
        encode_precision: the same for the encoder (:meth:`encode`), ``'fp32'`` by default: the
            token ids are the training targets, and bf16 convolutions flip some of them (see
            docs/performance). The nearest-code search is always float32.
    """

    def __init__(self,
                 ch: int = 128,
                 ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2,
                 attn_resolutions: Iterable[int] = (16, ),
                 z_channels: int = 256,
                 n_embed: int = 1024,
                 embed_dim: int = 256,
                 resolution: int = 256,
                 in_channels: int = 3,
                 out_ch: int = 3,
                 dropout: float = 0.0,
                 checkpoint: Optional[Union[str, Mapping]] = None,
                 precision: Optional[str] = None,
                 encode_precision: Optional[str] = 'fp32'):
        super().__init__()
        if len(ch_mult) == 0 or any(float(m) != int(m) for m in ch_mult) or float(ch) != int(ch):
            raise UsageError('VQGANTokenizer ch and ch_mult must be integers with at least one '
                             f'level; got ch={ch}, ch_mult={tuple(ch_mult)}')
        ch_mult = tuple(int(m) for m in ch_mult)
        check_vqgan_channels(int(ch), ch_mult)
        if z_channels != embed_dim:
            raise UsageError(f'z_channels ({z_channels}) must equal embed_dim ({embed_dim}): this '
                             'tokenizer has no quant_conv / post_quant_conv')
        self.ch = int(ch)
        self.ch_mult = ch_mult
        self.num_res_blocks = int(num_res_blocks)
        self.attn_resolutions = tuple(attn_resolutions or ())  # ignored, as in the release
        self.z_channels = int(z_channels)
        self.n_embed = int(n_embed)
        self.embed_dim = int(embed_dim)
        self.resolution = int(resolution)
        self.in_channels = int(in_channels)
        self.out_ch = int(out_ch)

        self.encoder = VQGANEncoder(self.ch, ch_mult, self.num_res_blocks, self.in_channels,
                                    self.z_channels, dropout)
        self.decoder = VQGANDecoder(self.ch, ch_mult, self.num_res_blocks, self.out_ch,
                                    self.z_channels, dropout)
        self.quantize = VectorQuantizer(self.n_embed, self.embed_dim)
        self.precision = check_precision(precision, 'VQGANTokenizer precision')
        self.encode_precision = check_precision(encode_precision, 'VQGANTokenizer encode_precision')
        self.checkpoint = checkpoint

    # ------------------------------------------------------------------ weights
    def load_checkpoint(self, checkpoint: Union[str, os.PathLike, Mapping],
                        prefix: Optional[str] = None,
                        key: str = 'VQGANTokenizer checkpoint') -> 'VQGANTokenizer':
        """Load tokenizer weights strictly from a file or a loaded checkpoint (``prefix``: see
        :func:`~addp_mm.checkpoint.vqgan_state_dict`)."""
        load_weights(self, checkpoint, vqgan_state_dict, STRICT, key, prefix=prefix)
        return self

    def init_weights(self) -> None:
        """Load ``checkpoint`` (the only place the file is read); without one keep the weights."""
        if self.checkpoint is not None:
            self.load_checkpoint(self.checkpoint)

    # ------------------------------------------------------------------ geometry
    @property
    def downsample_factor(self) -> int:
        return 2**(len(self.ch_mult) - 1)

    def grid_size(self, img_hw: Union[int, Sequence[int]]) -> Tuple[int, int]:
        """Token grid (h, w) of an image of size ``img_hw`` (int or (H, W))."""
        hw = (img_hw, img_hw) if isinstance(img_hw, int) else tuple(img_hw)
        f = self.downsample_factor
        if len(hw) != 2 or any(s % f for s in hw):
            raise UsageError(f'VQGANTokenizer: image size {hw} must be divisible by its downsample '
                             f'factor {f} (2 ** (len(ch_mult) - 1))')
        return hw[0] // f, hw[1] // f

    @property
    def codebook(self) -> torch.Tensor:
        """The code vectors, n_embed x embed_dim."""
        return self.quantize.embedding.weight

    # ------------------------------------------------------------------ forward paths
    def encode_latent(self, x: torch.Tensor, precision: Optional[str] = OWN) -> torch.Tensor:
        """Encoder output before quantisation, B x embed_dim x h x w (in ``precision``, default
        ``encode_precision``)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'expected B x {self.in_channels} x H x W pixels, got {tuple(x.shape)}')
        self.grid_size(x.shape[-2:])
        with precision_context(part_precision(self.encode_precision, precision), x.device):
            return self.encoder(x)

    def encode(self, x: torch.Tensor, precision: Optional[str] = OWN
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pixels in [0, 1] (no normalisation) -> (z_q B x C x h x w, indices B x (h*w) int64).

        ``z_q`` is the straight-through value ``z + (e - z)`` (equal to the code up to rounding);
        indices are in raster order: ``indices[b, w*r + c]`` is the code of ``z_q[b, :, r, c]``.
        ``precision``: the encoder's (default ``encode_precision``); the nearest-code search is
        float32.
        """
        return self.quantize(self.encode_latent(x, precision))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.encode(x)

    def decode(self, z: torch.Tensor, precision: Optional[str] = OWN) -> torch.Tensor:
        """Codes B x embed_dim x h x w -> pixels B x out_ch x (f*h) x (f*w), not clamped
        (``precision``: the decoder's, default ``precision``)."""
        if z.dim() != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(f'expected B x {self.embed_dim} x h x w codes, got {tuple(z.shape)}')
        precision = part_precision(self.precision, precision)
        with precision_context(precision, z.device):
            x = self.decoder(z)
        if precision is not None:
            x = x.to(z.dtype)
        return x.contiguous()

    def embed_indices(self, indices: torch.Tensor,
                      hw: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Codebook lookup: indices B x L (raster order) or B x h x w -> B x embed_dim x h x w.

        For B x L indices ``hw`` defaults to a square grid.
        """
        if indices.dim() == 3:
            b, h, w = indices.shape
        elif indices.dim() == 2:
            b, n = indices.shape
            if hw is None:
                side = int(round(n**0.5))
                if side * side != n:
                    raise ValueError(f'{n} tokens do not form a square grid: pass hw=(h, w)')
                hw = (side, side)
            h, w = int(hw[0]), int(hw[1])
            if h * w != n:
                raise ValueError(f'hw={tuple(hw)} does not match {n} tokens')
        else:
            raise ValueError(f'expected B x L or B x h x w indices, got {tuple(indices.shape)}')
        e = F.embedding(indices.reshape(b, h * w).long(), self.codebook)
        return e.view(b, h, w, self.embed_dim).permute(0, 3, 1, 2).contiguous()

    def soft_embed(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected code under a distribution: B x n_embed x h x w -> B x embed_dim x h x w."""
        if probs.dim() != 4 or probs.shape[1] != self.n_embed:
            raise ValueError(f'expected B x {self.n_embed} x h x w probabilities, '
                             f'got {tuple(probs.shape)}')
        return torch.einsum('bnhw,nd->bdhw', probs, self.codebook.to(probs.dtype))

    def decode_indices(self, indices: torch.Tensor,
                       hw: Optional[Sequence[int]] = None) -> torch.Tensor:
        """``decode(embed_indices(indices, hw))``."""
        return self.decode(self.embed_indices(indices, hw))

    def mix_codes(self, mask: torch.Tensor, probs: torch.Tensor,
                  codes: torch.Tensor) -> torch.Tensor:
        """ADDP's codes of a denoising state: the expected code under ``probs`` where ``mask`` is
        set (the unreliable positions), ``codes`` elsewhere.

        Args:
            mask: ``B x N`` (``N = h * w``, raster order), nonzero = take the expected code.
            probs: distributions over the codebook, ``B x n_embed x h x w`` or ``B x N x n_embed``.
            codes: the known codes, ``B x embed_dim x h x w``.
        """
        B, C, h, w = codes.shape
        if probs.dim() == 3:
            probs = probs.transpose(1, 2).reshape(B, -1, h, w)
        soft = self.soft_embed(probs.to(codes.dtype))
        return torch.where(mask.bool().view(B, 1, h, w), soft, codes)

    def decode_mixed(self, mask: torch.Tensor, probs: torch.Tensor, codes: torch.Tensor,
                     precision: Optional[str] = OWN) -> Tuple[torch.Tensor, torch.Tensor]:
        """ADDP's step from tokens to pixels: :meth:`mix_codes`, decoded (in ``precision``).
        Returns ``(pixels, mixed codes)``."""
        z = self.mix_codes(mask, probs, codes)
        return self.decode(z, precision), z

    def extra_repr(self) -> str:
        return (f'ch={self.ch}, ch_mult={self.ch_mult}, num_res_blocks={self.num_res_blocks}, '
                f'n_embed={self.n_embed}, embed_dim={self.embed_dim}')


@inference_form_of(VQGANTokenizer)
class _FastVQGANTokenizer(VQGANTokenizer):
    """``VQGANTokenizer`` in its inference layouts: the decoder's weights and inputs
    channels-last (the layout oneDNN / cuDNN convolutions run fastest in), the encoder's as
    :meth:`encoder_layout` says."""
    encoder_channels_last: Optional[bool] = None

    def enter_inference_form(self, encoder_channels_last: Optional[bool] = None, **_) -> None:
        self.encoder_channels_last = encoder_channels_last
        self.decoder.to(memory_format=torch.channels_last)

    def leave_inference_form(self) -> None:
        self.decoder.to(memory_format=torch.contiguous_format)

    def encoder_layout(self, device, precision: Optional[str] = OWN) -> torch.memory_format:
        """Channels-last when forced (``encoder_channels_last``), else on a CPU in a fast mode:
        the encoder itself computes in a reduced dtype (``precision`` of the call, default
        ``encode_precision``) or the decoder's ``precision`` is a reduced one (the encoder's
        GroupNorms then sum in another order, latents move by ~3e-4, token ids are kept); NCHW
        otherwise, the release's numbers."""
        channels_last = self.encoder_channels_last
        if channels_last is None:
            device = torch.device(device)
            encode = part_precision(self.encode_precision, precision)
            channels_last = device.type == 'cpu' and (
                active_dtype(encode, device) is not None
                or resolve_precision(self.precision, device) in ('bf16', 'fp16'))
        return torch.channels_last if channels_last else torch.contiguous_format

    def encode_latent(self, x: torch.Tensor, precision: Optional[str] = OWN) -> torch.Tensor:
        layout = self.encoder_layout(x.device, precision)
        return super().encode_latent(x.contiguous(memory_format=layout), precision)

    def decode(self, z: torch.Tensor, precision: Optional[str] = OWN) -> torch.Tensor:
        return super().decode(z.contiguous(memory_format=torch.channels_last), precision)
