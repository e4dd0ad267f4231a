"""Reference checks: tokenizers rows (see addp_mm/verify/core.py).

The VQGAN is rebuilt from the reference ``vqgan_*.yaml`` + ``vqgan_*.ckpt`` through the public
loaders. Each stage is fed the *recorded* inputs (e.g. ``vq_recon`` decodes the recorded
``vq_zq``), so one stage's float noise cannot propagate into the next.
"""
from typing import Dict, List

import torch

from ..models.tokenizers.vqgan import VQGANTokenizer, load_vqgan_state_dict
from .core import ReferenceDir, Row, compare, register_check

__all__ = ['build_reference_vqgan', 'TOKENIZER_CHECKS']


def build_reference_vqgan(ref: ReferenceDir) -> VQGANTokenizer:
    """The reference tokenizer: config from ``vqgan_*.yaml``, weights from ``vqgan_*.ckpt``."""
    return VQGANTokenizer.from_yaml(ref.file('vqgan_yaml'), checkpoint=ref.file('vqgan'))


def _weights_row(key: str, ours: Dict[str, torch.Tensor], theirs: Dict[str, torch.Tensor],
                 note: str) -> Row:
    """Same key set and bit-identical tensors."""
    if set(ours) != set(theirs):
        diff = sorted(set(ours) ^ set(theirs))
        return Row(key, f'{len(theirs)} tensors', None, False, f'key sets differ, e.g. {diff[:3]}')
    err = 0.0
    for k, t in theirs.items():
        o = ours[k]
        if tuple(o.shape) != tuple(t.shape):
            return Row(key, f'{len(theirs)} tensors', None, False, f'{k}: shape {tuple(o.shape)} '
                       f'!= {tuple(t.shape)}')
        err = max(err, float((o.double() - t.double()).abs().max()) if t.numel() else 0.0)
    return Row(key, f'{len(theirs)} tensors', err, err == 0.0, note)


@register_check
def check_vqgan_encode_decode(ref: ReferenceDir) -> List[Row]:
    v = ref.vectors
    vq = build_reference_vqgan(ref)
    z = vq.encode_latent(v['img'])
    zq, indices = vq.quantize(z)
    rows = [
        compare('vq_z', z, v['vq_z']),
        compare('vq_zq', zq, v['vq_zq']),
        compare('vq_indices', indices, v['vq_indices']),
        compare('vq_emb_loss', vq.quantize.legacy_loss(z, zq), v['vq_emb_loss']),
        compare('vq_recon', vq.decode(v['vq_zq']), v['vq_recon'], note='decode(recorded vq_zq)'),
        compare('x_t', vq.decode(v['z_t']), v['x_t'], note='decode(recorded z_t)'),
    ]
    # the codebook lookup reproduces the quantised codes (up to the straight-through rounding)
    rows.append(compare('vq_zq[embed_indices]', vq.embed_indices(v['vq_indices']), v['vq_zq'],
                        note='codebook[recorded vq_indices]'))
    return rows


@register_check
def check_vqgan_generation_decode(ref: ReferenceDir) -> List[Row]:
    """``gen_xt_next`` from the recorded per-step logits, masks and tokens: soft codes (softmax of
    the logits against the codebook) where still masked, hard codes elsewhere, then decode."""
    v = ref.vectors
    if 'gen_xt_next' not in v:
        return []
    vq = build_reference_vqgan(ref)
    outs = []
    for logits, mask, tokens in zip(v['gen_logits'], v['gen_masks'], v['gen_tokens']):
        b, n, k = logits.shape
        h, w = vq.grid_size(tuple(v['img'].shape[-2:]))
        probs = torch.softmax(logits, dim=-1).transpose(1, 2).reshape(b, k, h, w)
        soft = vq.soft_embed(probs)
        hard = vq.embed_indices(tokens, (h, w))
        z = torch.where(mask.view(b, 1, h, w).bool(), soft, hard)
        outs.append(vq.decode(z))
    return [compare('gen_xt_next[tokenizer]', torch.stack(outs), v['gen_xt_next'],
                    note='tokenizer: soft_embed/embed_indices + decode of recorded steps')]


@register_check
def check_vqgan_checkpoint_layouts(ref: ReferenceDir) -> List[Row]:
    """The ``vqgan.*`` weights inside the release-format checkpoints equal the MAGE ckpt, and load
    strictly into the tokenizer."""
    base = load_vqgan_state_dict(ref.file('vqgan'))
    rows = []
    addp = load_vqgan_state_dict(ref.file('addp'))  # auto: 'vqgan.' prefix
    rows.append(_weights_row('vq_release_ckpt_weights', addp, base,
                             "official_addp 'vqgan.*' == vqgan ckpt"))
    tp_copy = load_vqgan_state_dict(ref.file('addp'), prefix='token_predictor.vqgan.')
    rows.append(_weights_row('vq_release_tp_ckpt_weights', tp_copy, base,
                             "official_addp 'token_predictor.vqgan.*' == vqgan ckpt"))
    mage = load_vqgan_state_dict(ref.file('token_predictor'))
    rows.append(_weights_row('vq_mage_ckpt_weights', mage, base,
                             "MAGE token predictor 'vqgan.*' == vqgan ckpt"))
    # strict load of the release checkpoint through the constructor, and the same outputs
    vq = VQGANTokenizer.from_yaml(ref.file('vqgan_yaml'), checkpoint=ref.file('addp'))
    v = ref.vectors
    rows.append(compare('vq_indices[official_addp]', vq.encode(v['img'])[1], v['vq_indices'],
                        note='tokenizer loaded from official_addp'))
    return rows


TOKENIZER_CHECKS = (check_vqgan_encode_decode, check_vqgan_generation_decode,
                    check_vqgan_checkpoint_layouts)
