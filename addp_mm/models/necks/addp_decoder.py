"""The ADDP pretraining decoder and its MLM head.

The decoder reads the encoder features of the current pixels, hides the cls slot and every
unreliable (masked) position behind a learned mask token, appends the token embeddings of the
reliable (visible) positions, runs ViT blocks and scores grid positions against the token
vocabulary (codebook, class slots, mask id) through the tied, detached token embedding. Which
positions and entries are scored is the caller's: a pretraining step scores the masked grid
positions over the whole vocabulary (all its loss reads), generation every grid position over
the codebook.

Sequence layout (``N`` grid positions, ``V`` visible per row):
``[cls slot | N grid slots | V appended visible tokens]``, length ``1 + N + V``.

A token grid of another size than the decoder's (outpainting: a larger canvas) reads its three
position tables resized to that grid (bicubic, as the encoder's position table).
"""
import math
from functools import partial
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.registry import MODELS

from addp_mm.errors import UsageError

from ..layers import MLMHead, build_blocks, init_linear_and_norm, resize_pos_embed


@MODELS.register_module()
class ADDPDecoder(nn.Module):
    """ADDP token decoder: encoder features + reliable tokens -> logits over the vocabulary.

    Inside ``ADDP`` the sizes the backbone and tokenizer fix are filled in when left out:
    ``embed_dim`` (the backbone's width), ``num_patches`` (its patch grid) and ``codebook_size``
    (the tokenizer's ``n_embed``).

    Args:
        embed_dim: encoder width (also the width of ``token_emb``, ``pos_mask_embed`` and the
            MLM head's output).
        depth, num_heads, mlp_ratio: decoder blocks (the release: 8 blocks, 16 heads).
        num_patches: number of grid positions ``N`` (h * w of the token grid).
        grid_size: the token grid ``(h, w)`` the position tables are made for (default: square).
        codebook_size: number of VQ codes (the first entries of the vocabulary).
        decoder_embed_dim: decoder width; ``None`` or ``embed_dim`` (see below).
        vocab_size: token ids ``0..vocab_size-1``; default ``codebook_size + num_classes + 1``
            (the release: 1024 codes + 1000 class slots + the mask id).
        num_classes: class slots of the vocabulary after the codebook (MAGE's layout; unused ids).
        drop: dropout in attention and MLP (the release's pretraining uses 0.1).
        norm_eps: eps of the block and final LayerNorms.
        mlm_ln_eps: eps of the MLM head's LayerNorm (1e-5 in the release).
        attn_fp32: attention in float32 under autocast, as the release (see ``Attention``).
    """

    def __init__(self, embed_dim: Optional[int] = None, depth: int = 8, num_heads: int = 16,
                 num_patches: Optional[int] = None, codebook_size: Optional[int] = None,
                 decoder_embed_dim: Optional[int] = None, vocab_size: Optional[int] = None,
                 num_classes: int = 1000, mlp_ratio: float = 4., drop: float = 0.1,
                 norm_eps: float = 1e-6, mlm_ln_eps: float = 1e-5, attn_fp32: bool = True,
                 grid_size: Optional[Sequence[int]] = None):
        super().__init__()
        unset = [n for n, v in (('embed_dim', embed_dim), ('num_patches', num_patches),
                                ('codebook_size', codebook_size)) if v is None]
        if unset:
            raise UsageError(f'ADDPDecoder needs {unset}: give them, or build it as the neck of '
                             'ADDP, which takes them from its backbone and tokenizer')
        decoder_embed_dim = embed_dim if decoder_embed_dim is None else decoder_embed_dim
        if decoder_embed_dim != embed_dim:
            raise UsageError(
                f'ADDPDecoder needs decoder_embed_dim == embed_dim (got {decoder_embed_dim} and '
                f'{embed_dim}): the token embeddings of the visible positions (width '
                'embed_dim) are appended to the decoder sequence, and the masked-position '
                'embedding (release decoder_pos_mask_embed) has width embed_dim, as in the '
                'released checkpoints')
        vocab_size = codebook_size + num_classes + 1 if vocab_size is None else vocab_size
        if vocab_size <= codebook_size:
            raise UsageError(f'vocab_size ({vocab_size}) must exceed codebook_size '
                             f'({codebook_size}): the last id is the mask id')
        side = math.isqrt(num_patches)
        grid_size = tuple(grid_size) if grid_size is not None else (side, side)
        if grid_size[0] * grid_size[1] != num_patches:
            raise UsageError(f'ADDPDecoder grid_size={grid_size} does not hold num_patches='
                             f'{num_patches} positions')
        self.embed_dim = embed_dim
        self.num_patches = num_patches
        self.grid_size = grid_size
        self.vocab_size = vocab_size
        self.codebook_size = codebook_size
        dim = decoder_embed_dim

        self.decoder_embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.pos_mask_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_token_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.token_emb = nn.Embedding(vocab_size, embed_dim)
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.blocks = build_blocks(depth, dim, num_heads, mlp_ratio, qkv_bias=True, drop=drop,
                                   attn_drop=drop, norm_layer=norm_layer, attn_fp32=attn_fp32)
        self.norm = norm_layer(dim)
        self.mlm_head = MLMHead(dim, embed_dim, vocab_size, ln_eps=mlm_ln_eps)
        self.init_weights()

    @property
    def mask_token_id(self) -> int:
        return self.vocab_size - 1

    def init_weights(self) -> None:
        """The release's initialisation: N(0, 0.02) for the tables and the mask token,
        Xavier-uniform Linear weights with zero bias, unit/zero LayerNorms, zero MLM bias."""
        for p in (self.pos_embed, self.pos_mask_embed, self.pos_token_embed, self.mask_token,
                  self.token_emb.weight):
            nn.init.normal_(p, std=.02)
        init_linear_and_norm(self)
        nn.init.zeros_(self.mlm_head.bias)

    # ------------------------------------------------------------------------------------------
    def position_tables(self, grid_hw: Optional[Tuple[int, int]] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``pos_embed``, ``pos_mask_embed``, ``pos_token_embed`` for the token grid ``grid_hw``
        (default: the decoder's own), each ``1 x (1 + h*w) x D``."""
        tables = (self.pos_embed, self.pos_mask_embed, self.pos_token_embed)
        if grid_hw is None or tuple(grid_hw) == self.grid_size:
            return tables
        return tuple(resize_pos_embed(t, self.grid_size, tuple(grid_hw)) for t in tables)

    def embed(self, enc_out: torch.Tensor, indices: torch.Tensor, mask: torch.Tensor,
              num_visible: Optional[int] = None,
              grid_hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """The decoder input sequence with position embeddings added, ``B x (1+N+V) x D``.

        ``num_visible`` (``V``, the same for every row) is known to the caller during
        pretraining (from the mask schedule); without it it is read from ``mask`` (a device
        read, for sampling and tests). ``grid_hw``: the token grid when it is not the decoder's.
        """
        B, N = mask.shape
        expected = self.num_patches if grid_hw is None else grid_hw[0] * grid_hw[1]
        if N != expected:
            raise ValueError(f'mask has {N} positions, the token grid {grid_hw or self.grid_size} '
                             f'has {expected}')
        if enc_out.shape[:2] != (B, N + 1):
            raise ValueError(f'enc_out must be B x (1+N) x C = {B} x {N + 1} x C (cls at 0), got '
                             f'{tuple(enc_out.shape)}')
        if indices.shape != (B, N):
            raise ValueError(f'indices must be {B} x {N}, got {tuple(indices.shape)}')
        masked = mask.bool()
        if num_visible is None:
            counts = (~masked).sum(1)
            if B and bool((counts != counts[0]).any()):
                raise ValueError('every row must have the same number of visible positions, got '
                                 f'{counts.tolist()}')
            num_visible = int(counts[0]) if B else 0

        x = self.decoder_embed(enc_out)
        D = x.shape[-1]
        # the cls slot and the masked grid slots are replaced by the mask token
        hide = torch.cat([masked.new_ones(B, 1), masked], dim=1).unsqueeze(-1)
        grid = torch.where(hide, self.mask_token.to(x.dtype), x)
        # masked grid slots take the masked-position embedding; the cls slot keeps pos_embed[0]
        pos_masked = torch.cat([masked.new_zeros(B, 1), masked], dim=1).unsqueeze(-1)
        pos_embed, pos_mask_embed, pos_token_embed = self.position_tables(grid_hw)
        grid_pos = torch.where(pos_masked, pos_mask_embed, pos_embed)
        # reliable tokens, row-wise in position order (a stable sort puts the visible positions
        # first, in order), with their own position embedding
        visible = masked.to(torch.uint8).argsort(dim=1, stable=True)[:, :num_visible]
        tokens = self.token_emb(indices.gather(1, visible))
        token_pos = pos_token_embed[:, 1:].expand(B, -1, -1).gather(
            1, visible.unsqueeze(-1).expand(-1, -1, D))
        return torch.cat([grid + grid_pos, tokens + token_pos], dim=1)

    def features(self, enc_out: torch.Tensor, indices: torch.Tensor, mask: torch.Tensor,
                 num_visible: Optional[int] = None) -> torch.Tensor:
        """The decoder's hidden states of the whole sequence after ``norm``, ``B x (1+N+V) x D``
        (what the release's ``forward_decoder`` scores; the reference checks read it)."""
        return self.norm(self._blocks(self.embed(enc_out, indices, mask, num_visible)))

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x

    def forward(self, enc_out: torch.Tensor, indices: torch.Tensor, mask: torch.Tensor,
                num_visible: Optional[int] = None, positions: Optional[torch.Tensor] = None,
                num_codes: Optional[int] = None,
                grid_hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Logits of grid positions, ``B x N x vocab_size``; with ``positions`` (``B x M`` grid
        indices, e.g. :func:`~addp_mm.models.utils.masking.masked_positions`) only those, and
        with ``num_codes`` only the first ``num_codes`` vocabulary entries (the codebook).

        Args:
            enc_out: encoder output ``B x (1+N) x embed_dim``, cls at index 0.
            indices: token ids ``B x N`` (int64) of the current grid; only visible ones are read.
            mask: ``B x N``, 1 = masked (unreliable); every row must have the same count.
            num_visible: the number of unmasked positions per row when the caller knows it.
            positions: the grid positions to score (default: all ``N``).
            num_codes: how many vocabulary entries to score (default: all).
            grid_hw: the token grid ``(h, w)`` when it is not the decoder's own.
        """
        N = mask.shape[1]
        x = self._blocks(self.embed(enc_out, indices, mask, num_visible, grid_hw))[:, 1:1 + N]
        if positions is not None:
            x = x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self.score(self.norm(x), num_codes)

    def score(self, hidden: torch.Tensor, num_codes: Optional[int] = None) -> torch.Tensor:
        """The MLM head on normalised hidden states, against the detached token embedding."""
        return self.mlm_head(hidden, self.token_emb.weight.detach(), num_codes)
