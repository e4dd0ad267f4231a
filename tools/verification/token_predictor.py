"""Reference checks: the frozen MAGE token predictor (see core.py).

The predictor is built through the registry from the reference MAGE checkpoint, and both
``tp_probs`` (``mask_t``) and ``tp_pred_emb`` (``mask_t_next``) come from ONE batched ``predict``
call, as in pretraining. The codebook is read from the VQGAN checkpoint's state dict directly.
"""
from typing import List, Optional

import torch
from mmengine.registry import MODELS

from addp_mm.models.target_generators import MAGETokenPredictor
from addp_mm.models.utils import mage_state_dict, read_checkpoint, unwrap_state_dict
from .core import ReferenceDir, Row, call_capturing, compare, register_check

PROB_ATOL = 1e-6  # probabilities are ~1e-3; the README suggests rtol 1e-4


def build_reference_token_predictor(ref: ReferenceDir,
                                    checkpoint: Optional[str] = None) -> MAGETokenPredictor:
    """The token predictor with the reference dimensions, loaded from ``checkpoint`` (default: the
    folder's ``mage_token_predictor_*.pth``)."""
    cfg = ref.config
    tp = cfg['token_predictor']
    grid = (cfg['img_size'] // cfg['patch_size'],) * 2
    model = MODELS.build(dict(
        type='MAGETokenPredictor',
        embed_dim=tp['embed_dim'], depth=tp['depth'], num_heads=tp['num_heads'],
        decoder_embed_dim=tp['decoder_embed_dim'], decoder_depth=tp['decoder_depth'],
        decoder_num_heads=tp['decoder_num_heads'], mlp_ratio=tp['mlp_ratio'],
        norm_eps=tp['norm_eps'], codebook_size=cfg['vqgan']['n_embed'], grid_size=grid,
        patch_size=cfg['patch_size'], in_chans=cfg['in_chans'],
        checkpoint=checkpoint or ref.file('token_predictor')))
    model.init_weights()
    return model.eval()


def load_mage_checkpoint(path: str) -> dict:
    return mage_state_dict(unwrap_state_dict(read_checkpoint(path, 'reference file')))


def reference_codebook(ref: ReferenceDir) -> torch.Tensor:
    state = read_checkpoint(ref.file('vqgan'), 'reference file')['state_dict']
    return state['quantize.embedding.weight']


@register_check
def check_token_predictor(ref: ReferenceDir) -> List[Row]:
    v = ref.vectors
    model = build_reference_token_predictor(ref)
    (probs_t, probs_next), captured = call_capturing(
        model.norm, model.predict, v['vq_indices'], [v['mask_t'], v['mask_t_next']])
    B = v['vq_indices'].shape[0]
    enc_out = captured[0][:B]  # the batch is [mask_t rows, mask_t_next rows]
    pred_emb = torch.einsum('bnhw,nd->bdhw', probs_next, reference_codebook(ref))
    return [
        compare('tp_probs', probs_t, v['tp_probs'], atol=PROB_ATOL),
        compare('tp_encoder_out', enc_out, v['tp_encoder_out']),
        compare('tp_pred_emb', pred_emb, v['tp_pred_emb'], atol=5e-5),
    ]


@register_check
def check_release_token_predictor_weights(ref: ReferenceDir) -> List[Row]:
    """The ``token_predictor.*`` weights inside the released ADDP checkpoint are MAGE's."""
    mage = load_mage_checkpoint(ref.file('token_predictor'))
    addp = load_mage_checkpoint(ref.file('addp'))
    key = 'tp_release_ckpt_weights'
    shape = f'{len(mage)} tensors'
    if set(mage) != set(addp):
        diff = sorted(set(mage) ^ set(addp))
        return [Row(key, shape, None, False, f'key sets differ, e.g. {diff[:3]}')]
    err = 0.0
    for k, t in mage.items():
        o = addp[k]
        if o.shape != t.shape or o.dtype != t.dtype:
            return [Row(key, shape, None, False, f'{k}: {tuple(o.shape)}/{o.dtype} != '
                                                  f'{tuple(t.shape)}/{t.dtype}')]
        err = max(err, float((o.double() - t.double()).abs().max()) if t.numel() else 0.0)
    return [Row(key, shape, err, err == 0.0, 'token_predictor.* of official_addp == MAGE file')]
