"""Reference checks: the frozen MAGE token predictor (see core.py).

The predictor is built through the registry from the reference MAGE checkpoint, and both
``tp_probs`` (``mask_t``) and ``tp_pred_emb`` (``mask_t_next``) come from ONE batched ``predict``
call, as in pretraining. The codebook is read from the VQGAN checkpoint's state dict directly.
"""
from typing import List, Optional

import torch
from mmengine.registry import MODELS

from addp_mm.models.target_generators import MAGETokenPredictor
from addp_mm.checkpoint import read_checkpoint
from .core import ReferenceDir, Row, call_capturing, compare, register_check

PROB_RTOL = 1e-4  # probabilities are ~1/1024: a relative tolerance (the reference README's)


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
        compare('tp_probs', probs_t, v['tp_probs'], atol=0., rtol=PROB_RTOL, note='rtol 1e-4'),
        compare('tp_encoder_out', enc_out, v['tp_encoder_out']),
        compare('tp_pred_emb', pred_emb, v['tp_pred_emb'], atol=5e-5),
    ]


@register_check
def check_release_token_predictor_load(ref: ReferenceDir) -> List[Row]:
    """The token predictor loaded from the released ADDP checkpoint (its ``token_predictor.*``
    entries, through ``mage_state_dict``) reproduces the recorded probabilities."""
    v = ref.vectors
    model = build_reference_token_predictor(ref, checkpoint=ref.file('addp'))
    probs_t, _ = model.predict(v['vq_indices'], [v['mask_t'], v['mask_t_next']])
    return [compare('tp_probs[official_addp]', probs_t, v['tp_probs'], atol=0., rtol=PROB_RTOL,
                    note='token predictor loaded from official_addp; rtol 1e-4')]
