"""The MAGE token predictor that ADDP keeps frozen.

A pretrained MAGE ViT maps a partly masked grid of VQ token ids to a distribution over the
codebook at every grid position. ADDP runs it (without gradients) twice per pretraining step on the
true tokens: with ``mask_{t+1}`` hidden for the soft embedding that is decoded into the pixels of
step t, and with ``mask_t`` hidden for the training target.

What one call computes (the release's ``sample_tokens``):

1. masked ids are replaced by the mask id (``codebook_size + num_classes``) and a fake class id
   (``fake_class_label``, 1100 in the release) is put in front as sequence position 0;
2. BERT-style embedding: word embedding + learned position embedding, LayerNorm (eps 1e-6);
3. the encoder blocks see all ``1 + h*w`` tokens (nothing is dropped: masked positions are present
   as mask ids) followed by ``norm``;
4. ``decoder_embed``; every masked position is overwritten by the decoder-embedded output of the
   class position (MAGE's ``pad_with_cls_token``; ``mask_token`` is not used),
   ``decoder_pos_embed_learned`` is added, then the decoder blocks and ``decoder_norm``;
5. MLM head: Linear -> GELU -> LayerNorm (eps 1e-5, PyTorch's default, as in the release) -> logits
   against the word-embedding matrix + a bias; the softmax is taken over the first ``codebook_size``
   logits of the grid positions.

Parameter names follow MAGE's checkpoints, so ``mage-vitb-1600.pth`` / ``mage-vitl-1600.pth`` (minus
their ``vqgan.*`` entries) and the ``token_predictor.*`` part of the released ADDP checkpoints load
strictly. Parameters that sampling never reads (``cls_token``, ``pos_embed``, ``patch_embed``,
``mask_token``, ``decoder_pos_embed``, ``decoder_pred``) exist only for that.
"""
from functools import partial
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from timm.layers import PatchEmbed

from addp_mm.checkpoint import STRICT, load_weights, mage_state_dict
from addp_mm.errors import UsageError

from ..layers import MLMHead, build_blocks, init_linear_and_norm
from ..layers.pos_embed import sincos_pos_embed_2d
from ..utils.precision import OWN, check_precision, part_precision, precision_context

__all__ = ['MAGETokenPredictor', 'fit_to_tokenizer']

# The release derives the fake class id as ``codebook_size + 1100 - 1024``.
FAKE_CLASS_OFFSET = 76


class TokenEmbedding(nn.Module):
    """Word + learned position embedding followed by a LayerNorm (MAGE's ``BertEmbeddings``).

    ``position_ids`` is kept as a persistent buffer because MAGE checkpoints contain it. Dropout is
    left out: the token predictor only ever runs in eval mode.
    """

    def __init__(self, vocab_size: int, dim: int, num_positions: int, eps: float = 1e-6):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.position_embeddings = nn.Embedding(num_positions, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.register_buffer('position_ids', torch.arange(num_positions).unsqueeze(0))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = self.position_embeddings(self.position_ids[:, :ids.shape[1]])
        return self.LayerNorm(self.word_embeddings(ids) + pos)


@MODELS.register_module()
class MAGETokenPredictor(nn.Module):
    """MAGE token predictor (see the module docstring for what it computes).

    Args:
        embed_dim, depth, num_heads: encoder width, number of blocks, heads.
        decoder_embed_dim, decoder_depth, decoder_num_heads: the same for the decoder.
        mlp_ratio: MLP hidden size / width.
        codebook_size: VQ codebook entries (vocabulary ids ``0..codebook_size-1``).
        num_classes: class slots in the vocabulary after the codebook (unused ids, 1000 in MAGE).
        grid_size: token grid, ``int`` (square) or ``(h, w)``; 16 for 256x256 images.
        fake_class_label: id put at sequence position 0; default ``codebook_size + 76`` (= 1100 for
            the release's 1024 codes).
        patch_size, in_chans: only shape the unused ``patch_embed`` / ``decoder_pred`` parameters.
        norm_eps: eps of the blocks' and the embedding's LayerNorms (MLM head LayerNorm: 1e-5).
        checkpoint: MAGE ``mage-vit*-1600.pth`` or a released ADDP checkpoint, loaded strictly
            by :meth:`init_weights` (the constructor reads no file); ``None``: random weights.
        attn_fp32: attention in float32 under autocast, as MAGE's release (see ``Attention``).
        precision: ``'fp32'``, ``'bf16'``, ``'fp16'``, ``'auto'`` (bf16 where the hardware runs it
            natively, else fp32) or ``None`` (follow the caller's autocast), see
            :mod:`addp_mm.models.utils.precision`; the softmax is always float32.

    The vocabulary is ``codebook_size + num_classes + 1`` ids, the last being the mask id.
    Inside ADDP it is frozen by ``ADDPNoiser``.
    """

    def __init__(self, embed_dim: int, depth: int, num_heads: int, decoder_embed_dim: int,
                 decoder_depth: int, decoder_num_heads: int, mlp_ratio: float = 4.,
                 codebook_size: int = 1024, num_classes: int = 1000,
                 grid_size: Union[int, Tuple[int, int]] = 16,
                 fake_class_label: Optional[int] = None, patch_size: int = 16, in_chans: int = 3,
                 norm_eps: float = 1e-6, checkpoint: Optional[str] = None, attn_fp32: bool = True,
                 precision: Optional[str] = None):
        super().__init__()
        self.precision = check_precision(precision, 'MAGETokenPredictor precision')
        gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
        self.grid_size = (gh, gw)
        self.num_tokens = gh * gw
        self.codebook_size = codebook_size
        self.num_classes = num_classes
        self.vocab_size = codebook_size + num_classes + 1
        self.mask_token_label = self.vocab_size - 1
        if fake_class_label is None:
            fake_class_label = codebook_size + FAKE_CLASS_OFFSET
        if not 0 <= fake_class_label < self.vocab_size:
            raise UsageError(f'fake_class_label {fake_class_label} is outside the vocabulary '
                             f'[0, {self.vocab_size})')
        self.fake_class_label = fake_class_label
        self.checkpoint = checkpoint
        num_positions = self.num_tokens + 1
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)

        self.token_emb = TokenEmbedding(self.vocab_size, embed_dim, num_positions, eps=norm_eps)

        # encoder (+ MAGE's image-path parameters, unused when sampling tokens)
        self.patch_embed = PatchEmbed((gh * patch_size, gw * patch_size), patch_size, in_chans,
                                      embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, embed_dim), requires_grad=False)
        self.blocks = build_blocks(depth, embed_dim, num_heads, mlp_ratio, qkv_bias=True,
                                   norm_layer=norm_layer, attn_fp32=attn_fp32)
        self.norm = norm_layer(embed_dim)

        # decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_positions, decoder_embed_dim),
                                              requires_grad=False)
        self.decoder_pos_embed_learned = nn.Parameter(
            torch.zeros(1, num_positions, decoder_embed_dim))
        self.decoder_blocks = build_blocks(decoder_depth, decoder_embed_dim, decoder_num_heads,
                                           mlp_ratio, qkv_bias=True, norm_layer=norm_layer,
                                           attn_fp32=attn_fp32)
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans)

        self.mlm_layer = MLMHead(decoder_embed_dim, embed_dim, self.vocab_size)

        self._random_init()

    # ------------------------------------------------------------------------------------------
    # weights and frozen state
    # ------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``checkpoint`` (the only place the file is read), else MAGE's random init."""
        if self.checkpoint is not None:
            self.load_checkpoint(self.checkpoint)
        else:
            self._random_init()

    def _random_init(self) -> None:
        grid = self.grid_size
        self.pos_embed.data.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], grid))
        self.decoder_pos_embed.data.copy_(
            sincos_pos_embed_2d(self.decoder_pos_embed.shape[-1], grid))
        init_linear_and_norm(self)
        for m in self.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=.02)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        for p in (self.cls_token, self.mask_token, self.decoder_pos_embed_learned):
            nn.init.normal_(p, std=.02)
        nn.init.zeros_(self.mlm_layer.bias)

    def load_checkpoint(self, checkpoint, key: str = 'MAGETokenPredictor checkpoint') -> None:
        """Strictly load a MAGE or released ADDP checkpoint file (or loaded dict); ``vqgan.*``
        entries are ignored (:func:`~addp_mm.checkpoint.mage_state_dict`)."""
        load_weights(self, checkpoint, mage_state_dict, STRICT, key)

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def _check_inputs(self, indices: torch.Tensor, mask: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        B = indices.shape[0]
        indices = indices.reshape(B, -1)
        mask = mask.reshape(mask.shape[0], -1)
        if indices.shape[1] != self.num_tokens or tuple(mask.shape) != tuple(indices.shape):
            raise ValueError(f'expected token ids and mask of shape (B, {self.num_tokens}) '
                             f'(grid {self.grid_size}), got {tuple(indices.shape)} and '
                             f'{tuple(mask.shape)}')
        return indices.long(), mask.bool()

    def encode(self, indices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder output after ``norm``: ``(B, 1 + h*w, embed_dim)``, class position first."""
        indices, mask = self._check_inputs(indices, mask)
        ids = indices.masked_fill(mask, self.mask_token_label)
        cls_ids = ids.new_full((ids.shape[0], 1), self.fake_class_label)
        x = self.token_emb(torch.cat([cls_ids, ids], dim=1))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def decoder_features(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The decoder blocks' output ``(B, 1 + h*w, decoder_embed_dim)`` (before
        ``decoder_norm``) from :meth:`encode`'s output; masked positions start from the
        decoder-embedded class output."""
        mask = mask.reshape(mask.shape[0], -1).bool()
        x = self.decoder_embed(latent)
        fill = torch.cat([mask.new_zeros(mask.shape[0], 1), mask], dim=1).unsqueeze(-1)
        x = torch.where(fill, x[:, :1], x) + self.decoder_pos_embed_learned
        for blk in self.decoder_blocks:
            x = blk(x)
        return x

    def decode(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Codebook logits ``(B, h*w, codebook_size)`` of the grid positions from :meth:`encode`'s
        output (the class position and the other vocabulary entries are not scored)."""
        x = self.decoder_norm(self.decoder_features(latent, mask)[:, 1:])
        return self.mlm_layer(x, self.token_emb.word_embeddings.weight, self.codebook_size)

    @torch.no_grad()
    def forward(self, indices: torch.Tensor, mask: torch.Tensor,
                precision: Optional[str] = OWN) -> torch.Tensor:
        """Probabilities over the codebook, ``(B, codebook_size, h, w)`` (float32).

        Args:
            indices: ``(B, h*w)`` (or ``(B, h, w)``) token ids in raster order.
            mask: same shape, 1/True = masked (hidden from the predictor).
            precision: the predictor's (default: its ``precision``).
        """
        with precision_context(part_precision(self.precision, precision), indices.device):
            logits = self.decode(self.encode(indices, mask), mask)
        probs = logits.float().softmax(dim=-1)
        B = probs.shape[0]
        return probs.transpose(1, 2).reshape(B, self.codebook_size, *self.grid_size)

    @torch.no_grad()
    def predict(self, indices: torch.Tensor, masks: Sequence[torch.Tensor],
                precision: Optional[str] = OWN) -> List[torch.Tensor]:
        """:meth:`forward` for several masks of the same tokens in one batched pass.

        Returns one ``(B, codebook_size, h, w)`` probability map per mask, in the order given.
        """
        masks = list(masks)
        if not masks:
            return []
        B = indices.shape[0]
        masks = [m.reshape(m.shape[0], -1).to(indices.device) for m in masks]
        probs = self(indices.reshape(B, -1).repeat(len(masks), 1),
                     torch.cat([m.bool() for m in masks], dim=0), precision)
        return list(probs.split(B, dim=0))


def fit_to_tokenizer(cfg: dict, tokenizer) -> dict:
    """A token predictor's config with the sizes its tokenizer fixes filled in (when left out):
    ``codebook_size`` (the tokenizer's ``n_embed``) and ``grid_size`` (its token grid at its
    ``resolution``)."""
    cfg = dict(cfg)
    cfg.setdefault('codebook_size', tokenizer.n_embed)
    cfg.setdefault('grid_size', tokenizer.grid_size(tokenizer.resolution))
    return cfg
