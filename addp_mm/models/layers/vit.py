"""The one ViT of addp-mm.

Attention, transformer block, window partitioning and decomposed relative position are written once
here and used by the ADDP encoder (``ADDPViT``), the pretraining decoder, the MAGE token predictor and
every downstream backbone variant (global or windowed attention, with or without relative position).

Tokens are kept as ``(B, N, C)`` sequences; blocks that need the 2-D layout (window attention,
relative position) receive the token grid size ``hw`` and must then be fed patch tokens only
(no class token), as in ViTDet.
"""
from contextlib import nullcontext
from functools import partial
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp

from addp_mm.compat import is_exporting
from addp_mm.errors import UsageError

from .inference import inference_form_of

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


# ----------------------------------------------------------------------------------------------
# window partitioning (ViTDet): pure functions
# ----------------------------------------------------------------------------------------------
def window_partition(x: torch.Tensor, window_size: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Split a ``(B, H, W, C)`` map into ``(B * nW, ws * ws, C)`` windows, zero-padding H and W up
    to multiples of ``window_size``. Returns the windows and the padded size."""
    B, H, W, C = x.shape
    # sizes as (number of windows) x window_size: exporters then see they divide exactly
    nh, nw = (H + window_size - 1) // window_size, (W + window_size - 1) // window_size
    Hp, Wp = nh * window_size, nw * window_size
    if is_exporting() or Hp != H or Wp != W:  # exported: the padding follows the input's size
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    x = x.view(B, nh, window_size, nw, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window_size: int, padded_hw: Tuple[int, int],
                       hw: Tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws * ws, C)`` -> ``(B, H, W, C)``, crop the
    padding."""
    Hp, Wp = padded_hw
    H, W = hw
    C = windows.shape[-1]
    nh, nw = Hp // window_size, Wp // window_size
    x = windows.view(-1, nh, nw, window_size, window_size, C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, Hp, Wp, C)
    if is_exporting():  # a gather, not a slice: a slice's layout depends on the input's size
        rows = torch.arange(H, device=x.device)
        cols = torch.arange(W, device=x.device)
        return x.index_select(1, rows).index_select(2, cols)
    return x[:, :H, :W, :].contiguous()


# ----------------------------------------------------------------------------------------------
# decomposed relative position (MViTv2 / ViTDet): pure functions
# ----------------------------------------------------------------------------------------------
def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings for every (query, key) pair along one axis.

    ``rel_pos`` is ``(L, C)`` for ``L`` relative distances; it is linearly resized when the
    queries/keys span a different range than it was made for. Returns ``(q_size, k_size, C)``.
    """
    num_dist = 2 * max(q_size, k_size) - 1
    # exported: always resized (a no-op at the same length), so other input sizes stay correct
    if is_exporting() or rel_pos.shape[0] != num_dist:
        rel_pos = F.interpolate(rel_pos.t().unsqueeze(0), size=num_dist, mode='linear')
        rel_pos = rel_pos.squeeze(0).t()
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None]
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :]
    if q_size == k_size:  # self-attention (all of ours): integer offsets q - k + (k - 1)
        return rel_pos[q_coords - k_coords + (k_size - 1)]
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    offsets = (q_coords * q_scale - k_coords * k_scale) + (k_size - 1) * k_scale
    return rel_pos[offsets.long()]


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                            q_hw: Tuple[int, int], k_hw: Tuple[int, int]) -> torch.Tensor:
    """Additive attention bias ``(B, heads, Nq, Nk)`` of decomposed relative position.

    ``q`` is ``(B, heads, Nq, head_dim)`` (unscaled queries); the bias is added to the scaled
    logits, i.e. it enters ``scaled_dot_product_attention`` as ``attn_mask``.
    """
    B, nh, _, C = q.shape
    (qh, qw), (kh, kw) = q_hw, k_hw
    Rh = get_rel_pos(qh, kh, rel_pos_h).to(q.dtype)
    Rw = get_rel_pos(qw, kw, rel_pos_w).to(q.dtype)
    r_q = q.reshape(B, nh, qh, qw, C)
    bias_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, Rh)
    bias_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, Rw)
    bias = bias_h[..., :, None] + bias_w[..., None, :]
    return bias.reshape(B, nh, qh * qw, kh * kw)


# ----------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention on ``(B, N, C)`` tokens through
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    With ``use_rel_pos`` it holds decomposed relative position tables for a ``rel_pos_size`` grid
    (zero-initialised) and its ``forward`` needs the token grid ``hw``.

    ``attn_fp32=True`` computes the attention (logits, softmax, weighted sum) in float32 when the
    queries arrive in a lower precision (under autocast): q/k/v are upcast and attention runs with
    autocast disabled, the result is cast back. This is what the ADDP/MAGE release does during
    pretraining (its attention logits are computed with autocast off). In float32 it changes
    nothing.

    ``fused_attn`` (an attribute, as timm's): ``True`` runs SDPA; ``False`` writes the attention
    out as the releases do, ``softmax((q @ k^T) * scale - rowmax) @ v`` (the benchmark's
    release-style reference). While ``torch.export`` traces it (ONNX export), attention with a
    bias (relative position) is written out as ``softmax(q * scale @ k^T + bias) @ v``: the ONNX
    exporter's decomposition of SDPA with a bias fails.
    """
    fused_attn = True

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., use_rel_pos: bool = False,
                 rel_pos_size: Optional[Tuple[int, int]] = None, attn_fp32: bool = False):
        super().__init__()
        if dim % num_heads:
            raise UsageError(f'embed dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.use_rel_pos = use_rel_pos
        self.attn_fp32 = attn_fp32
        if use_rel_pos:
            if rel_pos_size is None:
                raise ValueError('use_rel_pos=True needs rel_pos_size (the token grid or window)')
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, self.head_dim))

    def forward(self, x: torch.Tensor, hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        dtype = q.dtype
        upcast = self.attn_fp32 and dtype in (torch.float16, torch.bfloat16)
        if upcast:
            q, k, v = q.float(), k.float(), v.float()
        with torch.autocast(q.device.type, enabled=False) if upcast else nullcontext():
            bias = None
            if self.use_rel_pos:
                if hw is None or hw[0] * hw[1] != N:
                    raise ValueError(f'relative position needs the token grid of the {N} tokens, got {hw}')
                bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, hw, hw)
            dropout = self.attn_drop if self.training else 0.
            if bias is not None and is_exporting():  # exporters decompose SDPA + bias wrongly
                attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
                x = (attn if bias is None else attn + bias).softmax(dim=-1) @ v
            elif self.fused_attn:
                x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
            else:
                attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
                if bias is not None:
                    attn = attn + bias
                attn = (attn - attn.amax(dim=-1, keepdim=True)).softmax(dim=-1)
                x = F.dropout(attn, dropout) @ v
        x = x.to(dtype).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class TransformerBlock(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Parameter names (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``)
    are those of the released ADDP/MAGE/MAE checkpoints. ``window_size > 0`` makes it a ViTDet
    window-attention block (inputs padded to a multiple of the window and cropped back).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop: float = 0., attn_drop: float = 0., drop_path: float = 0.,
                 norm_layer: Callable[[int], nn.Module] = LayerNorm6,
                 act_layer: Callable[..., nn.Module] = nn.GELU, window_size: int = 0,
                 use_rel_pos: bool = False, input_size: Optional[Tuple[int, int]] = None,
                 attn_fp32: bool = False):
        super().__init__()
        self.window_size = window_size
        self.norm1 = norm_layer(dim)
        rel_pos_size = (window_size, window_size) if window_size > 0 else input_size
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop, use_rel_pos=use_rel_pos, rel_pos_size=rel_pos_size,
                              attn_fp32=attn_fp32)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor, hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        h = self.norm1(x)
        if self.window_size > 0:
            if hw is None or hw[0] * hw[1] != x.shape[1]:
                raise ValueError('window attention needs patch tokens only (no class token) and '
                                 f'their grid size; got {x.shape[1]} tokens for grid {hw}')
            B, N, C = h.shape
            windows, padded_hw = window_partition(h.view(B, hw[0], hw[1], C), self.window_size)
            windows = self.attn(windows, (self.window_size, self.window_size))
            h = window_unpartition(windows, self.window_size, padded_hw, hw).view(B, N, C)
        else:
            h = self.attn(h, hw)
        x = self.residual(x, self.drop_path(h))
        return self.residual(x, self.drop_path(self.mlp(self.norm2(x))))

    @staticmethod
    def residual(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``x + h`` (in place in the inference form, :class:`_FastTransformerBlock`)."""
        return x + h


@inference_form_of(TransformerBlock)
class _FastTransformerBlock(TransformerBlock):
    """``TransformerBlock`` whose residual sums go in place into the fresh branch output when no
    gradient is recorded (``h + x == x + h`` exactly)."""

    @staticmethod
    def residual(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and h.dtype == x.dtype and h.shape == x.shape:
            return h.add_(x)
        return x + h


def init_linear_and_norm(module: nn.Module) -> None:
    """The MAE/MAGE/ADDP initialisation of a transformer's layers: Xavier-uniform Linear weights
    with zero biases, unit/zero LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_blocks(depth: int, dim: int, num_heads: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop: float = 0., attn_drop: float = 0., drop_path_rate: float = 0.,
                 norm_layer: Callable[[int], nn.Module] = LayerNorm6, window_size: int = 0,
                 window_block_indexes=(), use_rel_pos: bool = False,
                 input_size: Optional[Tuple[int, int]] = None, attn_fp32: bool = False) -> nn.ModuleList:
    """``depth`` blocks with a linear drop-path ramp; with ``window_size > 0`` only the blocks in
    ``window_block_indexes`` use window attention, the others stay global. ``attn_fp32``: see
    :class:`Attention`."""
    dpr = (torch.linspace(0, drop_path_rate, depth, device='cpu').tolist() if depth > 1
           else [drop_path_rate] * depth)
    return nn.ModuleList([
        TransformerBlock(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop,
                         drop_path=dpr[i], norm_layer=norm_layer,
                         window_size=window_size if i in window_block_indexes else 0,
                         use_rel_pos=use_rel_pos, input_size=input_size, attn_fp32=attn_fp32)
        for i in range(depth)
    ])
