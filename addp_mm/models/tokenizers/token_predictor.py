"""The frozen MAGE token predictor of ADDP (spec 1 and 2.3).

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
import os.path as osp
from functools import partial
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from timm.layers import PatchEmbed

from ..layers.pos_embed import sincos_pos_embed_2d
from ..layers import MLMHead, build_blocks, init_linear_and_norm
from ..utils.checkpoint import load_checkpoint_file
from ..utils.precision import check_precision, precision_context

__all__ = ['MAGETokenPredictor', 'mage_state_dict', 'load_mage_checkpoint']

VQGAN_PREFIX = 'vqgan.'
ADDP_PREFIX = 'token_predictor.'
# The release derives the fake class id as ``codebook_size + 1100 - 1024``.
FAKE_CLASS_OFFSET = 76


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------
def mage_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The token-predictor weights of a MAGE or ADDP state dict, in MAGE's key layout.

    Accepts a MAGE checkpoint's ``model`` dict (its ``vqgan.*`` entries are dropped: the VQGAN is a
    separate module here) or a released ADDP ``model`` dict, from which only the
    ``token_predictor.*`` entries are kept, without that prefix (``token_predictor.vqgan.*`` dropped
    as well). A whole checkpoint ``{'model': ...}`` is unwrapped. The input is not modified.
    """
    if 'model' in state and isinstance(state['model'], Mapping):
        state = state['model']
    if any(k.startswith(ADDP_PREFIX) for k in state):
        state = {k[len(ADDP_PREFIX):]: v for k, v in state.items() if k.startswith(ADDP_PREFIX)}
    return {k: v for k, v in state.items() if not k.startswith(VQGAN_PREFIX)}


def _missing_checkpoint_message(path: str) -> str:
    return (f'token predictor checkpoint {path!r} not found. It is MAGE\'s pretrained model '
            'from the MAGE release (github.com/LTH14/mage): mage-vitb-1600.pth for ViT-B, '
            'mage-vitl-1600.pth for ViT-L (a released ADDP checkpoint, which embeds it as '
            'token_predictor.*, also works). Nothing is downloaded here: place the file locally '
            'and pass its path.')


def load_mage_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Read a MAGE (``{'model': ...}``) or released ADDP checkpoint with ``weights_only=True`` and
    return :func:`mage_state_dict` of it. ADDP checkpoints pickle an ``argparse.Namespace``, which
    is allow-listed (``addp_mm.utils.safe_globals``)."""
    if not osp.isfile(path):
        raise FileNotFoundError(_missing_checkpoint_message(path))
    ckpt = load_checkpoint_file(path, what='MAGE token predictor checkpoint')
    if not isinstance(ckpt, Mapping):
        raise ValueError(f'{path!r} does not hold a state dict (got {type(ckpt).__name__})')
    return mage_state_dict(ckpt)


# ----------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------
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
    """Frozen MAGE token predictor (see the module docstring for what it computes).

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
        checkpoint: MAGE ``mage-vit*-1600.pth`` or a released ADDP checkpoint, loaded strictly.
        precision: ``'fp32'``, ``'bf16'``, ``'fp16'``, ``'auto'`` (bf16 where the hardware runs it
            natively, else fp32) or ``None`` (follow the caller's autocast), see
            :mod:`addp_mm.models.utils.precision`; the softmax is always float32.

    The vocabulary is ``codebook_size + num_classes + 1`` ids, the last being the mask id.
    The module is always frozen: no parameter requires grad and ``train()`` keeps it in eval mode.
    """

    def __init__(self, embed_dim: int, depth: int, num_heads: int, decoder_embed_dim: int,
                 decoder_depth: int, decoder_num_heads: int, mlp_ratio: float = 4.,
                 codebook_size: int = 1024, num_classes: int = 1000,
                 grid_size: Union[int, Tuple[int, int]] = 16,
                 fake_class_label: Optional[int] = None, patch_size: int = 16, in_chans: int = 3,
                 norm_eps: float = 1e-6, checkpoint: Optional[str] = None,
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
            raise ValueError(f'fake_class_label {fake_class_label} is outside the vocabulary '
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
                                   norm_layer=norm_layer)
        self.norm = norm_layer(embed_dim)

        # decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_positions, decoder_embed_dim),
                                              requires_grad=False)
        self.decoder_pos_embed_learned = nn.Parameter(
            torch.zeros(1, num_positions, decoder_embed_dim))
        self.decoder_blocks = build_blocks(decoder_depth, decoder_embed_dim, decoder_num_heads,
                                           mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans)

        self.mlm_layer = MLMHead(decoder_embed_dim, embed_dim, self.vocab_size)

        self.init_weights()

    # ------------------------------------------------------------------------------------------
    # weights and frozen state
    # ------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``checkpoint`` when given, else MAGE's random initialisation; then freeze.

        Named like mmengine's hook so that a parent ``BaseModule.init_weights()`` (which may first
        apply its own ``init_cfg`` to every submodule) ends by restoring the pretrained weights.
        """
        if self.checkpoint is not None:
            self.load_mage_weights(self.checkpoint)
        else:
            self._random_init()
        self.requires_grad_(False)
        self.eval()

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

    def load_mage_weights(self, path: str) -> None:
        """Strictly load a MAGE or released ADDP checkpoint (``vqgan.*`` ignored)."""
        state = load_mage_checkpoint(path)
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f'{path!r} does not match this token predictor '
                               f'(check its embed_dim/depth/heads/codebook sizes): {e}') from None

    def train(self, mode: bool = True) -> 'MAGETokenPredictor':
        """Always stays in eval mode (frozen), whatever ``mode`` is."""
        return super().train(False)

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

    def decode(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Codebook logits ``(B, h*w, codebook_size)`` of the grid positions from :meth:`encode`'s
        output; masked positions start from the decoder-embedded class output."""
        mask = mask.reshape(mask.shape[0], -1).bool()
        x = self.decoder_embed(latent)
        fill = torch.cat([mask.new_zeros(mask.shape[0], 1), mask], dim=1).unsqueeze(-1)
        x = torch.where(fill, x[:, :1], x) + self.decoder_pos_embed_learned
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x[:, 1:])
        return self.mlm_layer(x, self.token_emb.word_embeddings.weight, self.codebook_size)

    @torch.no_grad()
    def forward(self, indices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Probabilities over the codebook, ``(B, codebook_size, h, w)`` (float32).

        Args:
            indices: ``(B, h*w)`` (or ``(B, h, w)``) token ids in raster order.
            mask: same shape, 1/True = masked (hidden from the predictor).
        """
        with precision_context(self.precision, indices.device):
            logits = self.decode(self.encode(indices, mask), mask)
        probs = logits.float().softmax(dim=-1)
        B = probs.shape[0]
        return probs.transpose(1, 2).reshape(B, self.codebook_size, *self.grid_size)

    @torch.no_grad()
    def predict(self, indices: torch.Tensor, masks: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """:meth:`forward` for several masks of the same tokens in one batched pass.

        Returns one ``(B, codebook_size, h, w)`` probability map per mask, in the order given.
        """
        masks = list(masks)
        if not masks:
            return []
        B = indices.shape[0]
        masks = [m.reshape(m.shape[0], -1).to(indices.device) for m in masks]
        probs = self(indices.reshape(B, -1).repeat(len(masks), 1),
                     torch.cat([m.bool() for m in masks], dim=0))
        return list(probs.split(B, dim=0))
