"""Position-embedding helpers shared by every ViT of the project."""
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from addp_mm.compat import is_exporting
from addp_mm.errors import UsageError


def resize_pos_embed(pos_embed: torch.Tensor, src_hw: Tuple[int, int], dst_hw: Tuple[int, int],
                     num_extra_tokens: int = 1, mode: str = 'bicubic') -> torch.Tensor:
    """Resize a ``(1, extra + H*W, C)`` table from grid ``src_hw`` to ``dst_hw``.

    The extra (class) slots are kept as they are; the grid part is interpolated on its 2-D layout
    (``align_corners=False``, no antialiasing: what the released fine-tuning code does).
    """
    # exported: always resized (a no-op at the same grid), so other input sizes stay correct
    if not is_exporting() and tuple(src_hw) == tuple(dst_hw):
        return pos_embed
    expected = num_extra_tokens + src_hw[0] * src_hw[1]
    if pos_embed.shape[1] != expected:
        raise ValueError(f'position embedding has {pos_embed.shape[1]} slots, expected {expected} '
                         f'for a {src_hw[0]}x{src_hw[1]} grid + {num_extra_tokens} extra token(s)')
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
    C = grid.shape[-1]
    grid = grid.reshape(1, src_hw[0], src_hw[1], C).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(dst_hw), mode=mode, align_corners=False, antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, C).to(pos_embed.dtype)
    return torch.cat([extra, grid], dim=1)


def sincos_pos_embed_2d(embed_dim: int, grid_hw: Tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine table ``(1, [1 +] H*W, C)`` (MAE/MAGE layout: first half of the
    channels encodes the column, second half the row; a zero row for the class slot)."""
    if embed_dim % 4:
        raise UsageError(f'sin-cos position embedding needs embed_dim % 4 == 0, got {embed_dim}')
    h, w = grid_hw
    gw, gh = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 4, dtype=np.float64) / (embed_dim / 4.0))

    def one_axis(pos):
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([one_axis(gw), one_axis(gh)], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, embed_dim)), table], axis=0)
    return torch.from_numpy(table).float().unsqueeze(0)
