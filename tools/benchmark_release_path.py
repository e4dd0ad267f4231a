"""The release-style reference path of ``tools/benchmark.py`` (benchmark code, not library code).

It computes what the released ADDP implementation computes, the way it computes it, with our
modules and the same weights:

* attention written out as float32 matmuls, ``softmax((q @ k^T) * scale - rowmax) @ v``, no
  ``scaled_dot_product_attention`` (:func:`release_attention_forward`, swapped in for
  ``Attention.forward`` while the path runs);
* the VQGAN in NCHW (contiguous) layout with ``x * sigmoid(x)`` and out-of-place residual sums,
  always float32 (:func:`release_tokenizer` makes such a copy of a tokenizer);
* the token predictor run twice per step, once per mask, each time scoring every sequence
  position (the class slot too) over the whole vocabulary before keeping the grid positions'
  codebook entries, as MAGE's ``sample_tokens`` does (:func:`release_predict`,
  :func:`release_noisy_pixels`);
* generation runs the encoder on the first step too (whose features the decoder then hides) and
  computes the decoder logits of every position over the whole vocabulary before slicing
  (:func:`release_generate`).
"""
import copy
import types
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
import torch.nn.functional as F

from addp_mm.models.layers import vit
from addp_mm.models.target_generators import vqgan

__all__ = ['release_style', 'release_attention_forward', 'release_tokenizer', 'release_predict',
           'release_noisy_pixels', 'release_loss', 'release_generate']


def release_attention_forward(self, x: torch.Tensor, hw=None) -> torch.Tensor:
    """``Attention.forward`` as the release writes it: explicit float32 matmuls."""
    B, N, C = x.shape
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = (t.float() for t in qkv.unbind(0))
    attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
    if self.use_rel_pos:
        attn = attn + vit.decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, hw, hw)
    attn = attn - attn.amax(dim=-1, keepdim=True)
    attn = attn.softmax(dim=-1)
    attn = F.dropout(attn, self.attn_drop if self.training else 0.)
    x = (attn @ v).transpose(1, 2).reshape(B, N, C)
    return self.proj_drop(self.proj(x))


def _release_swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _release_add(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return h + x


@contextmanager
def release_style() -> Iterator[None]:
    """Swap in the release's attention and VQGAN activation while the block runs."""
    saved = (vit.Attention.forward, vqgan._swish, vqgan._add)
    vit.Attention.forward = release_attention_forward
    vqgan._swish, vqgan._add = _release_swish, _release_add
    try:
        yield
    finally:
        vit.Attention.forward, vqgan._swish, vqgan._add = saved


def _plain_encode_latent(self, x: torch.Tensor) -> torch.Tensor:
    return self.encoder(x.float())


def _plain_decode(self, z: torch.Tensor) -> torch.Tensor:
    return self.decoder(z.float())


def release_tokenizer(tokenizer: vqgan.VQGANTokenizer) -> vqgan.VQGANTokenizer:
    """A float32, NCHW copy of ``tokenizer`` (same weights) that runs without autocast tricks."""
    ref = copy.deepcopy(tokenizer)
    ref.decoder.to(memory_format=torch.contiguous_format)
    ref.precision = ref.encode_precision = 'fp32'
    ref.encode_latent = types.MethodType(_plain_encode_latent, ref)
    ref.decode = types.MethodType(_plain_decode, ref)
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
def release_noisy_pixels(model, tokenizer, inputs, mask_t, mask_next) -> Dict[str, torch.Tensor]:
    """The release's ``forward_vqgan``: VQ encode, the token predictor once per mask, VQ decode."""
    predictor = model.target_generator.token_predictor
    saved, predictor.precision = predictor.precision, 'fp32'
    try:
        with release_style():
            z0, idx0 = tokenizer.encode(inputs)
            probs_t = release_predict(predictor, idx0, mask_t)
            probs_next = release_predict(predictor, idx0, mask_next)
            soft = tokenizer.soft_embed(probs_next)
            B = idx0.shape[0]
            z_t = torch.where(mask_t.bool().view(B, 1, *z0.shape[2:]), soft, z0)
            x_t = tokenizer.decode(z_t)
    finally:
        predictor.precision = saved
    return dict(indices=idx0, target=probs_t, x_t=x_t, mask_t=mask_t)


def release_loss(model, tokenizer, inputs, mask_t, mask_next) -> torch.Tensor:
    """One pretraining loss the release's way (``tokenizer`` from :func:`release_tokenizer`)."""
    state = release_noisy_pixels(model, tokenizer, inputs, mask_t, mask_next)
    with release_style():
        enc = model.encode(state['x_t'])
        logits = model.neck(enc, state['indices'], mask_t)
        return model.head(logits, state['target'], mask_t)


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
        with release_style():
            for step in range(sampler.num_steps):
                logits = model.neck(model.encode(pixels), tokens, mask)
                logits = model.neck.grid_logits(logits, codebook_only=True).float()
                sampled = sampler.sample_ids(logits, gen)
                new_tokens = torch.where(mask, sampled, tokens)
                mask_next = sampler.next_mask(logits, new_tokens, mask, step, gen)
                pixels = sampler.render(holder, logits, new_tokens, mask_next, geo.grid_hw)
                tokens, mask = new_tokens, mask_next
    finally:
        model.train(was_training)
    return pixels
