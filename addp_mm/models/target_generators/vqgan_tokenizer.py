"""The frozen VQ tokenizer of ADDP: MAGE's PyTorch port of the MaskGIT VQGAN.

Architecture (MaskGIT's VQGAN as ported by MAGE). It is *not* the stock taming VQGAN:

* GroupNorm(32, eps=1e-6) + swish everywhere, no attention layers (``attn_resolutions`` is accepted
  for config compatibility and ignored), no ``quant_conv`` / ``post_quant_conv``;
* residual convolutions have no bias; when a residual block changes the channel count, its 1x1
  ``nin_shortcut`` maps the *residual branch output* ``h`` (out -> out channels) and the block
  returns ``nin_shortcut(h) + h`` -- the input ``x`` does not reach the output of such a block;
* the encoder downsamples with 2x2 average pooling, the decoder upsamples with nearest x2 + a
  3x3 conv;
* every level of the encoder *and* of the decoder holds ``num_res_blocks`` residual blocks.

Parameter names follow taming's ``Encoder`` / ``Decoder`` / ``VectorQuantizer2`` so that MAGE's
``vqgan_jax_strongaug.ckpt`` (``{'state_dict': ...}``), and the ``vqgan.*`` entries of the released
ADDP / MAGE checkpoints, load strictly.

Pixels are consumed as RGB in [0, 1] without any normalisation and :meth:`VQGANTokenizer.decode`
returns unclamped pixels in the same space.

This is the reference code, written as the architecture reads. Inside ``ADDPNoiser`` (frozen,
inference only) :func:`~addp_mm.models.utils.inference.optimize_for_inference` swaps in the
fast forms (channels-last layout, fused and in-place residual sums); ``precision`` selects a
reduced precision for the decoder (:mod:`addp_mm.models.utils.precision`).
"""
import os
from typing import Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS

from addp_mm.checkpoint import STRICT, load_weights, vqgan_state_dict

from ..utils.precision import check_precision, precision_context

__all__ = ['VQGANTokenizer', 'VectorQuantizer']


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class _ResBlock(nn.Module):
    """norm-swish-conv3x3-norm-swish-dropout-conv3x3 (convs without bias).

    With a channel change the 1x1 ``nin_shortcut`` (out -> out) is applied to the residual output.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.in_channels != self.out_channels:
            return self.nin_shortcut(h) + h
        return x + h


class _MidBlocks(nn.Module):
    """The two residual blocks of the middle (a container: taming's names ``block_1``,
    ``block_2``)."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = _ResBlock(channels, channels, dropout)
        self.block_2 = _ResBlock(channels, channels, dropout)

    def blocks(self) -> Tuple[_ResBlock, _ResBlock]:
        return self.block_1, self.block_2


class _Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv (with bias)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class _Level(nn.Module):
    """One resolution level (a container): ``block`` (ModuleList), optionally ``upsample``
    (decoder only)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, dropout: float,
                 upsample: bool = False):
        super().__init__()
        blocks = []
        for _ in range(num_blocks):
            blocks.append(_ResBlock(in_channels, out_channels, dropout))
            in_channels = out_channels
        self.block = nn.ModuleList(blocks)
        if upsample:
            self.upsample = _Upsample(out_channels)



class _ResidualStack(nn.Module):
    """What the encoder and the decoder share: every residual block runs through
    :meth:`run_block` and every swish through :meth:`activation`, the places where the faster
    forms of :mod:`addp_mm.models.utils.inference` take over."""

    @staticmethod
    def run_block(block: _ResBlock, h: torch.Tensor) -> torch.Tensor:
        return block(h)

    @staticmethod
    def activation(x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class _Encoder(_ResidualStack):
    """conv_in, per level its residual blocks then average pooling (except the last), the middle
    blocks, norm_out, swish, conv_out."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, in_channels: int,
                 z_channels: int, dropout: float):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1, bias=False)
        levels = []
        block_in = ch
        for mult in ch_mult:
            levels.append(_Level(block_in, ch * mult, num_res_blocks, dropout))
            block_in = ch * mult
        self.down = nn.ModuleList(levels)
        self.mid = _MidBlocks(block_in, dropout)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            for block in level.block:
                h = self.run_block(block, h)
            if i != last:
                h = F.avg_pool2d(h, kernel_size=2, stride=2)
        for block in self.mid.blocks():
            h = self.run_block(block, h)
        return self.conv_out(self.activation(self.norm_out(h)))


class _Decoder(_ResidualStack):
    """conv_in, the middle blocks, per level (last to first) its residual blocks then nearest x2
    upsampling + conv (except level 0), norm_out, swish, conv_out."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, out_ch: int,
                 z_channels: int, dropout: float):
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _MidBlocks(block_in, dropout)
        # ``up[i]`` works at the resolution of encoder level i; the decoder runs them last to first
        levels = [None] * len(ch_mult)
        for i in reversed(range(len(ch_mult))):
            levels[i] = _Level(block_in, ch * ch_mult[i], num_res_blocks, dropout, upsample=i != 0)
            block_in = ch * ch_mult[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid.blocks():
            h = self.run_block(block, h)
        for level in reversed(self.up):
            for block in level.block:
                h = self.run_block(block, h)
            if hasattr(level, 'upsample'):
                h = level.upsample(h)
        return self.conv_out(self.activation(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantizer (``embedding``: n_embed x embed_dim)."""

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25):
        super().__init__()
        self.n_embed = n_embed
        self.embed_dim = embed_dim
        self.beta = beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def distances(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Squared L2 distances (N x n_embed) as ``(|z|^2 + |e|^2) - 2 z.e`` in that order."""
        e = self.embedding.weight
        z_sq = z_flat.pow(2).sum(dim=1, keepdim=True)
        e_sq = e.pow(2).sum(dim=1)
        return z_sq + e_sq - 2 * torch.matmul(z_flat, e.t())

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """z: B x C x h x w -> (z_q straight-through value, indices B x (h*w) in raster order)."""
        b, c, h, w = z.shape
        if c != self.embed_dim:
            raise ValueError(f'expected {self.embed_dim} latent channels, got {c}')
        # the nearest-code decision is always taken in float32, also under autocast (meta tensors,
        # used for shape-only runs, have no autocast of their own)
        device_type = 'cpu' if z.device.type == 'meta' else z.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            z32 = z.float()
            z_flat = z32.permute(0, 2, 3, 1).reshape(-1, c)
            indices = torch.argmin(self.distances(z_flat), dim=1)
            e = self.embedding.weight[indices].view(b, h, w, c).permute(0, 3, 1, 2)
            z_q = z32 + (e - z32).detach()
        return z_q.contiguous(), indices.view(b, h * w)


def _check_channels(ch: int, ch_mult: Sequence[int]) -> None:
    bad = [(i, ch * m) for i, m in enumerate(ch_mult) if (ch * m) % 32 != 0 or ch * m <= 0]
    if bad:
        raise ValueError(
            f'VQGANTokenizer uses GroupNorm with 32 groups, so every channel count ch*ch_mult[i] '
            f'must be a positive multiple of 32; got ch={ch}, ch_mult={tuple(ch_mult)} '
            f'(offending levels/channels: {bad})')


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
            loads strictly, in any layout :func:`~addp_mm.models.utils.vqgan_state_dict` reads.
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
            raise ValueError('ch and ch_mult must be integers with at least one level; '
                             f'got ch={ch}, ch_mult={tuple(ch_mult)}')
        ch_mult = tuple(int(m) for m in ch_mult)
        _check_channels(int(ch), ch_mult)
        if z_channels != embed_dim:
            raise ValueError(f'z_channels ({z_channels}) must equal embed_dim ({embed_dim}): this '
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

        self.encoder = _Encoder(self.ch, ch_mult, self.num_res_blocks, self.in_channels,
                                self.z_channels, dropout)
        self.decoder = _Decoder(self.ch, ch_mult, self.num_res_blocks, self.out_ch,
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
            raise ValueError(f'image size {hw} must be divisible by the downsample factor {f}')
        return hw[0] // f, hw[1] // f

    @property
    def codebook(self) -> torch.Tensor:
        """The code vectors, n_embed x embed_dim."""
        return self.quantize.embedding.weight

    # ------------------------------------------------------------------ forward paths
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output before quantisation, B x embed_dim x h x w."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'expected B x {self.in_channels} x H x W pixels, got {tuple(x.shape)}')
        self.grid_size(x.shape[-2:])
        with precision_context(self.encode_precision, x.device):
            return self.encoder(x)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pixels in [0, 1] (no normalisation) -> (z_q B x C x h x w, indices B x (h*w) int64).

        ``z_q`` is the straight-through value ``z + (e - z)`` (equal to the code up to rounding);
        indices are in raster order: ``indices[b, w*r + c]`` is the code of ``z_q[b, :, r, c]``.
        """
        return self.quantize(self.encode_latent(x))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes B x embed_dim x h x w -> pixels B x out_ch x (f*h) x (f*w), not clamped."""
        if z.dim() != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(f'expected B x {self.embed_dim} x h x w codes, got {tuple(z.shape)}')
        with precision_context(self.precision, z.device):
            x = self.decoder(z)
        if self.precision is not None:
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

    def decode_mixed(self, mask: torch.Tensor, probs: torch.Tensor,
                     codes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """ADDP's step from tokens to pixels: :meth:`mix_codes`, decoded. Returns
        ``(pixels, mixed codes)``."""
        z = self.mix_codes(mask, probs, codes)
        return self.decode(z), z

    def extra_repr(self) -> str:
        return (f'ch={self.ch}, ch_mult={self.ch_mult}, num_res_blocks={self.num_res_blocks}, '
                f'n_embed={self.n_embed}, embed_dim={self.embed_dim}')
