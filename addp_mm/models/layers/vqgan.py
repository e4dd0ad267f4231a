"""The VQGAN's layers (MAGE's PyTorch port of the MaskGIT VQGAN): encoder, decoder, residual
block and the nearest-code quantizer, used by ``VQGANTokenizer`` and ``VQAutoencoder``.

It is *not* the stock taming VQGAN:

* GroupNorm(32, eps=1e-6) + swish everywhere, no attention layers, no ``quant_conv`` /
  ``post_quant_conv``;
* residual convolutions have no bias; when a residual block changes the channel count, its 1x1
  ``nin_shortcut`` maps the *residual branch output* ``h`` (out -> out channels) and the block
  returns ``nin_shortcut(h) + h`` -- the input ``x`` does not reach the output of such a block;
* the encoder downsamples with 2x2 average pooling, the decoder upsamples with nearest x2 + a
  3x3 conv;
* every level of the encoder *and* of the decoder holds ``num_res_blocks`` residual blocks.

Parameter names follow taming's ``Encoder`` / ``Decoder`` / ``VectorQuantizer2``, so MAGE's
``vqgan_jax_strongaug.ckpt`` loads strictly. The inference forms of the encoder and decoder (in
place and fused residual sums, :mod:`.inference`) are at the end of this file.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from addp_mm.errors import UsageError

from . import inference
from .inference import add_into_, inference_form_of, silu_

__all__ = ['VQGANEncoder', 'VQGANDecoder', 'VQGANResBlock', 'VectorQuantizer',
           'check_vqgan_channels']


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def check_vqgan_channels(ch: int, ch_mult: Sequence[int], what: str = 'VQGANTokenizer') -> None:
    """Every channel count ``ch * ch_mult[i]`` must be a positive multiple of 32 (GroupNorm with
    32 groups); else a :class:`UsageError` naming the offending levels."""
    bad = [(i, ch * m) for i, m in enumerate(ch_mult) if (ch * m) % 32 != 0 or ch * m <= 0]
    if bad:
        raise UsageError(
            f'{what} uses GroupNorm with 32 groups, so every channel count ch*ch_mult[i] '
            f'must be a positive multiple of 32; got ch={ch}, ch_mult={tuple(ch_mult)} '
            f'(offending levels/channels: {bad})')


class VQGANResBlock(nn.Module):
    """norm-swish-conv3x3-norm-swish-dropout-conv3x3 (convs without bias).

    With a channel change the 1x1 ``nin_shortcut`` (out -> out) is applied to the residual output.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
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
        self.block_1 = VQGANResBlock(channels, channels, dropout)
        self.block_2 = VQGANResBlock(channels, channels, dropout)

    def blocks(self) -> Tuple[VQGANResBlock, VQGANResBlock]:
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
            blocks.append(VQGANResBlock(in_channels, out_channels, dropout))
            in_channels = out_channels
        self.block = nn.ModuleList(blocks)
        if upsample:
            self.upsample = _Upsample(out_channels)


class _ResidualStack(nn.Module):
    """What the encoder and the decoder share: every residual block runs through
    :meth:`run_block` and every swish through :meth:`activation`, the places where their
    inference forms take over."""

    @staticmethod
    def run_block(block: VQGANResBlock, h: torch.Tensor) -> torch.Tensor:
        return block(h)

    @staticmethod
    def activation(x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class VQGANEncoder(_ResidualStack):
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
        self.norm_out = group_norm(block_in)
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


class VQGANDecoder(_ResidualStack):
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
        self.norm_out = group_norm(block_in)
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


# ----------------------------------------------------------------------------------------------
# inference forms (optimize_for_inference)
# ----------------------------------------------------------------------------------------------
def _residual_block(block: VQGANResBlock, x: torch.Tensor) -> torch.Tensor:
    """A residual block whose input ``x`` the caller owns (an activation of this pass): without
    gradients its result may take ``x``'s memory."""
    if torch.is_grad_enabled():
        return block(x)
    h = block.conv1(silu_(block.norm1(x)))
    h = block.dropout(silu_(block.norm2(h)))
    if block.in_channels != block.out_channels:
        h = block.conv2(h)
        return add_into_(block.nin_shortcut(h), h)
    out = inference.conv_add_(block.conv2, h, x)
    return out if out is not None else add_into_(block.conv2(h), x)


@inference_form_of(VQGANEncoder)
class _FastVQGANEncoder(VQGANEncoder):
    """The encoder with in-place and fused residual sums: every activation inside a pass is the
    pass's own, so a residual sum may overwrite it."""
    run_block = staticmethod(_residual_block)
    activation = staticmethod(silu_)


@inference_form_of(VQGANDecoder)
class _FastVQGANDecoder(VQGANDecoder):
    """The decoder with in-place and fused residual sums (see :class:`_FastVQGANEncoder`)."""
    run_block = staticmethod(_residual_block)
    activation = staticmethod(silu_)
