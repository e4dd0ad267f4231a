"""Reference checks: tokenizers rows (see core.py).

The VQGAN is rebuilt from the reference ``vqgan_*.yaml`` + ``vqgan_*.ckpt`` through the public
loaders. Each stage is fed the *recorded* inputs (e.g. ``vq_recon`` decodes the recorded
``vq_zq``), so one stage's float noise cannot propagate into the next.
"""
import os.path as osp
from typing import Dict, List, Optional

import torch

from addp_mm.models.target_generators import VQGANTokenizer
from .core import ReferenceDir, Row, compare, register_check

__all__ = ['build_reference_vqgan', 'vqgan_config_from_yaml', 'TOKENIZER_CHECKS']


def vqgan_config_from_yaml(path: str) -> Dict:
    """Constructor kwargs of :class:`VQGANTokenizer` from a release-style ``vqgan*.yaml``.

    The yaml is taming's layout: ``model.params.{embed_dim, n_embed, ddconfig{...}}``.
    """
    import yaml
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'VQGAN config {path!r} not found (release: configs/release/vqgan.yaml)')
    with open(path) as f:
        cfg = yaml.safe_load(f)
    try:
        params = cfg['model']['params']
        dd = dict(params['ddconfig'])
    except (KeyError, TypeError) as e:
        raise ValueError(f'{path}: expected model.params.ddconfig (taming VQModel yaml)') from e
    if dd.pop('double_z', False):
        raise ValueError(f'{path}: double_z=True is not the MAGE/ADDP tokenizer (no KL head)')
    kwargs = dict(n_embed=int(params['n_embed']), embed_dim=int(params['embed_dim']))
    allowed = ('ch', 'ch_mult', 'num_res_blocks', 'attn_resolutions', 'z_channels', 'resolution',
               'in_channels', 'out_ch', 'dropout')
    unknown = sorted(set(dd) - set(allowed))
    if unknown:
        raise ValueError(f'{path}: unknown ddconfig entries {unknown}')
    for k, v in dd.items():
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    return kwargs



def vqgan_from_yaml(path: str, checkpoint: Optional[str] = None, **overrides) -> VQGANTokenizer:
    """A tokenizer with the sizes of a release-style ``vqgan*.yaml``, weights from ``checkpoint``;
    ``overrides`` are further ``VQGANTokenizer`` arguments (e.g. ``precision``)."""
    vq = VQGANTokenizer(checkpoint=checkpoint, **{**vqgan_config_from_yaml(path), **overrides})
    vq.init_weights()
    return vq.eval()


def build_reference_vqgan(ref: ReferenceDir) -> VQGANTokenizer:
    """The reference tokenizer: config from ``vqgan_*.yaml``, weights from ``vqgan_*.ckpt``."""
    return vqgan_from_yaml(ref.file('vqgan_yaml'), checkpoint=ref.file('vqgan'))


def legacy_vq_loss(z: torch.Tensor, z_q: torch.Tensor, beta: float = 0.25) -> torch.Tensor:
    """taming's ``legacy`` VQ loss: ``mean((sg[e]-z)^2) + beta * mean((e-sg[z])^2)``."""
    return torch.mean((z_q.detach() - z)**2) + beta * torch.mean((z_q - z.detach())**2)


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
        compare('vq_emb_loss', legacy_vq_loss(z, zq, vq.quantize.beta), v['vq_emb_loss']),
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
    """The tokenizer loaded (strictly, through ``vqgan_state_dict``) from each release layout that
    holds it reproduces the recorded codes: the released ADDP checkpoint (``vqgan.*``) and the MAGE
    token-predictor checkpoint (``vqgan.*``, beside the predictor's weights)."""
    v = ref.vectors
    rows = []
    for name, kind in (('official_addp', 'addp'), ('mage_token_predictor', 'token_predictor')):
        vq = vqgan_from_yaml(ref.file('vqgan_yaml'), checkpoint=ref.file(kind))
        rows.append(compare(f'vq_indices[{name}]', vq.encode(v['img'])[1], v['vq_indices'],
                            note=f'tokenizer loaded from {name}'))
    return rows


TOKENIZER_CHECKS = (check_vqgan_encode_decode, check_vqgan_generation_decode,
                    check_vqgan_checkpoint_layouts)
