"""The release-style reference path of ``tools/benchmark.py`` (benchmark code, not library code).

It computes what the released ADDP implementation computes, the way it computes it, with our
modules and the same weights, through their public switches (no patched names):

* attention written out as float32 matmuls, ``softmax((q @ k^T) * scale - rowmax) @ v``, no
  ``scaled_dot_product_attention`` (``Attention.fused_attn = False`` while the path runs,
  :func:`release_style`);
* the VQGAN in its reference form (NCHW, out-of-place sums: ``reference_form``) with taming's
  swish, ``x * sigmoid(x)`` (set through the encoder's and decoder's ``run_block`` /
  ``activation`` hooks of the copy), always float32 (:func:`release_tokenizer` makes such a copy
  of a tokenizer);
* the token predictor run twice per step, once per mask, each time scoring every sequence
  position (the class slot too) over the whole vocabulary before keeping the grid positions'
  codebook entries, as MAGE's ``sample_tokens`` does (:func:`release_predict`,
  :func:`release_noisy_pixels`);
* the decoder scoring every position over the whole vocabulary, the loss computed at every grid
  position and then averaged over the masked ones (:func:`release_loss`), the sampler keeping
  what it reads (:func:`release_generate`); generation also runs the
  encoder on the first step (whose features the decoder then hides).
"""
import copy
import types
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch

from addp_mm.models.layers import Attention
from addp_mm.models.target_generators import VQGANTokenizer
from addp_mm.models.layers import reference_form

__all__ = ['release_style', 'release_tokenizer', 'release_predict', 'release_noisy_pixels',
           'release_loss', 'release_generate']


@contextmanager
def release_style(*modules: torch.nn.Module, predictor_precision: Optional[str] = 'fp32'
                  ) -> Iterator[None]:
    """The release's attention (explicit matmuls) in ``modules`` while the block runs, and their
    token predictors in ``predictor_precision`` (``None``: the caller's autocast, as the release
    runs them under its AMP)."""
    attns = [m for module in modules for m in module.modules() if isinstance(m, Attention)]
    predictors = [m for module in modules for m in module.modules() if hasattr(m, 'mlm_layer')
                  and hasattr(m, 'precision')]
    saved = [a.fused_attn for a in attns], [p.precision for p in predictors]
    for a in attns:
        a.fused_attn = False
    for p in predictors:
        p.precision = predictor_precision
    try:
        yield
    finally:
        for a, value in zip(attns, saved[0]):
            a.fused_attn = value
        for p, value in zip(predictors, saved[1]):
            p.precision = value


def release_swish(x: torch.Tensor) -> torch.Tensor:
    """taming's ``nonlinearity``: ``x * sigmoid(x)`` (two passes and a temporary)."""
    return x * torch.sigmoid(x)


def release_res_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """taming's ``ResnetBlock.forward`` as MaskGIT's VQGAN (MAGE's port) runs it."""
    h = block.conv1(release_swish(block.norm1(x)))
    h = block.conv2(block.dropout(release_swish(block.norm2(h))))
    if block.in_channels != block.out_channels:
        return block.nin_shortcut(h) + h
    return x + h


def release_tokenizer(tokenizer: VQGANTokenizer, precision: Optional[str] = 'fp32'
                      ) -> VQGANTokenizer:
    """A copy of ``tokenizer`` (same weights) in its reference form, with taming's swish, in
    ``precision`` (``'fp32'``: the release's ``--fp32`` runs; ``None``: the caller's autocast, as
    its pretraining runs the VQGAN under AMP)."""
    ref = reference_form(copy.deepcopy(tokenizer))
    ref.precision = ref.encode_precision = precision
    for stack in (ref.encoder, ref.decoder):
        stack.run_block = release_res_block  # instance attributes: this copy only
        stack.activation = release_swish
    return ref


@torch.no_grad()
def release_predict(predictor, indices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One MAGE ``sample_tokens`` call the release's way: the decoder's logits at all ``1 + N``
    positions over all vocabulary entries, then the codebook softmax of the grid positions
    (``B x codebook_size x h x w``)."""
    x = predictor.decoder_features(predictor.encode(indices, mask), mask)
    logits = predictor.mlm_layer(predictor.decoder_norm(x),
                                 predictor.token_emb.word_embeddings.weight)
    probs = logits[:, 1:, :predictor.codebook_size].float().softmax(dim=-1)
    return probs.transpose(1, 2).reshape(probs.shape[0], predictor.codebook_size,
                                         *predictor.grid_size)


@torch.no_grad()
def release_noisy_pixels(model, tokenizer, inputs, mask_t, mask_next,
                         predictor_precision: Optional[str] = 'fp32') -> Dict[str, torch.Tensor]:
    """The release's ``forward_vqgan``: VQ encode, the token predictor once per mask, VQ decode
    (``predictor_precision`` as :func:`release_style`)."""
    predictor = model.target_generator.token_predictor
    with release_style(predictor, predictor_precision=predictor_precision):
        z0, idx0 = tokenizer.encode(inputs)
        probs_t = release_predict(predictor, idx0, mask_t)
        probs_next = release_predict(predictor, idx0, mask_next)
        x_t, _ = tokenizer.decode_mixed(mask_t, probs_next, z0)
    return dict(indices=idx0, target=probs_t, x_t=x_t, mask_t=mask_t)


def release_full_logits(model, enc: torch.Tensor, indices: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """The decoder's logits of every sequence position over the whole vocabulary (the release's
    ``forward_decoder``)."""
    return model.neck.score(model.neck.features(enc, indices, mask))


def release_soft_target_loss(logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor,
                             label_smoothing: float) -> torch.Tensor:
    """The release's loss: soft-target cross-entropy at every grid position (``logits`` of every
    sequence position, ``target_probs`` ``B x K x h x w``), then averaged over the masked ones."""
    B, N = mask.shape
    grid = logits[:, 1:1 + N].float()
    target = target_probs.float().flatten(2).transpose(1, 2)
    target = torch.nn.functional.pad(target, (0, grid.shape[-1] - target.shape[-1]))
    per_pos = torch.nn.functional.cross_entropy(grid.reshape(B * N, -1), target.reshape(B * N, -1),
                                                reduction='none', label_smoothing=label_smoothing)
    weight = mask.reshape(B * N).float()
    return (per_pos * weight).sum() / weight.sum().clamp(min=1.)


def release_loss(model, tokenizer, inputs, mask_t, mask_next,
                 predictor_precision: Optional[str] = 'fp32') -> torch.Tensor:
    """One pretraining loss the release's way (``tokenizer`` from :func:`release_tokenizer`; the
    token predictor in ``predictor_precision``, as :func:`release_style`)."""
    state = release_noisy_pixels(model, tokenizer, inputs, mask_t, mask_next, predictor_precision)
    with release_style(model.backbone, model.neck):
        logits = release_full_logits(model, model.encode(state['x_t']), state['indices'], mask_t)
        return model.head.loss_weight * release_soft_target_loss(
            logits, state['target'], mask_t, model.head.label_smoothing)


@torch.no_grad()
def release_generate(model, tokenizer, sampler, num_images: int, seed: int = 0,
                     img_size: Optional[int] = None) -> torch.Tensor:
    """``sampler.sample`` the release's way: the encoder also runs on the first step (on blank
    pixels its output is then hidden), full-vocabulary logits for every decoder position."""
    from addp_mm.models.generation import GenerationGeometry
    geo = GenerationGeometry(model)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    B, N = num_images, geo.num_tokens
    side = img_size or tokenizer.downsample_factor * geo.grid_hw[0]
    tokens = torch.full((B, N), geo.initial_token, dtype=torch.long, device=device)
    mask = torch.ones(B, N, dtype=torch.bool, device=device)
    pixels = torch.zeros(B, 3, side, side, device=device)
    holder = types.SimpleNamespace(target_generator=types.SimpleNamespace(tokenizer=tokenizer))
    was_training = model.training
    model.eval()
    try:
        with release_style(model.backbone, model.neck):
            for step in range(sampler.num_steps):
                logits = release_full_logits(model, model.encode(pixels), tokens, mask)
                logits = logits[:, 1:1 + N, :model.neck.codebook_size].float()
                sampled = sampler.sample_ids(logits, gen)
                new_tokens = torch.where(mask, sampled, tokens)
                mask_next = sampler.next_mask(logits, new_tokens, mask, step, gen)
                pixels = sampler.render(holder, logits, new_tokens, mask_next, geo.grid_hw)
                tokens, mask = new_tokens, mask_next
    finally:
        model.train(was_training)
    return pixels
