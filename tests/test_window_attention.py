"""Window attention with decomposed relative position (the shared ViT block) against an
independent computation written here from the definitions (ViTDet / MViTv2): for each window, for
each query i and key j,

    logit(i, j) = (q_i . k_j) / sqrt(d) + q_i . R_h[r_i - r_j + ws - 1] + q_i . R_w[c_i - c_j + ws - 1]

with non-zero tables, on a 5x4 token grid that windows of 3 must pad to 6x6 (padded positions are
zero features after norm1, as in ViTDet; they are keys of their window and are cropped away)."""
import math

import torch

from addp_mm.models.layers.vit import TransformerBlock


def reference_block(block, x, hw, ws):
    """The block's output computed token by token with explicit loops (no window_partition, no
    SDPA, no einsum of ours)."""
    B, N, C = x.shape
    H, W = hw
    heads = block.attn.num_heads
    d = C // heads
    Wqkv, bqkv = block.attn.qkv.weight, block.attn.qkv.bias
    Rh, Rw = block.attn.rel_pos_h, block.attn.rel_pos_w
    h = block.norm1(x).view(B, H, W, C)
    Hp, Wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws
    out = torch.zeros(B, H, W, C)
    for b in range(B):
        for wr in range(0, Hp, ws):
            for wc in range(0, Wp, ws):
                cells = [(wr + i, wc + j) for i in range(ws) for j in range(ws)]
                feats = torch.stack([h[b, r, c] if r < H and c < W else torch.zeros(C) for r, c in cells])
                qkv = feats @ Wqkv.t() + bqkv
                q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
                for n, (r, c) in enumerate(cells):
                    if r >= H or c >= W:
                        continue
                    heads_out = []
                    for e in range(heads):
                        sl = slice(e * d, (e + 1) * d)
                        logits = torch.stack([
                            q[n, sl] @ k[m, sl] / math.sqrt(d)
                            + q[n, sl] @ Rh[(r - r2) + ws - 1] + q[n, sl] @ Rw[(c - c2) + ws - 1]
                            for m, (r2, c2) in enumerate(cells)])
                        p = torch.exp(logits - logits.max())
                        p = p / p.sum()
                        heads_out.append((p[:, None] * v[:, sl]).sum(0))
                    out[b, r, c] = torch.cat(heads_out) @ block.attn.proj.weight.t() + block.attn.proj.bias
    x = x + out.view(B, N, C)
    return x + block.mlp(block.norm2(x))


def test_window_attention_with_relative_position_matches_the_definition():
    torch.manual_seed(0)
    ws, hw, dim = 3, (5, 4), 16
    block = TransformerBlock(dim, num_heads=2, mlp_ratio=2., window_size=ws, use_rel_pos=True).eval()
    with torch.no_grad():
        for p in block.parameters():  # non-trivial everything, tables included
            p.add_(torch.randn_like(p) * 0.5)
    assert block.attn.rel_pos_h.abs().min() > 0 and block.attn.rel_pos_h.shape == (2 * ws - 1, dim // 2)
    x = torch.randn(2, hw[0] * hw[1], dim)
    with torch.no_grad():
        ours = block(x, hw)
        expected = reference_block(block, x, hw, ws)
        # the tables matter: zeroing them changes the output
        rel_h = block.attn.rel_pos_h.clone()
        block.attn.rel_pos_h.zero_()
        without = block(x, hw)
        block.attn.rel_pos_h.copy_(rel_h)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
    assert (without - ours).abs().max() > 1e-2
