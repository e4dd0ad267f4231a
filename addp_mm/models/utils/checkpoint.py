"""Reading checkpoint files and converting foreign formats to our key names: pure functions.

Every loader here takes a local path (nothing downloads) and loads with ``weights_only=True``;
the few non-tensor types that the released ADDP files and our mmengine checkpoints hold are
allow-listed in :mod:`addp_mm.utils.safe_globals`.
"""
import os.path as osp
import re
from typing import Dict, List, Tuple

import torch

from addp_mm.utils.safe_globals import register_safe_globals

WHERE_TO_GET = {
    'addp': "the ADDP release (addp-vit-base-16.pth / addp-vit-large-16.pth, see the README 'Weights')",
    'vqgan': "MAGE's release (vqgan_jax_strongaug.ckpt, see the README 'Weights')",
    'token_predictor': "MAGE's release (mage-vitb-1600.pth / mage-vitl-1600.pth, see the README 'Weights')",
}


def load_checkpoint_file(path: str, what: str = 'checkpoint', where: str = '') -> Dict:
    """``torch.load`` a local file safely, with a clear error when it is missing.

    Args:
        path: local file.
        what: what the file is, for the error message (e.g. ``'backbone init_cfg.checkpoint'``).
        where: where a user gets the file, for the error message.
    """
    if not isinstance(path, str) or not osp.isfile(path):
        # the hint names the release's files: only for one of them, not a mistyped path of one's own
        hint = (f' Get it from {where} and put it there (nothing is downloaded).'
                if where and osp.basename(str(path)) in where else ' Check the path.')
        raise FileNotFoundError(f'{what}: file {path!r} not found.{hint}')
    register_safe_globals()
    return torch.load(path, map_location='cpu', weights_only=True)


def unwrap_state_dict(ckpt: Dict) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: ``{'state_dict': ...}`` (mmengine, taming),
    ``{'model': ...}`` (ADDP/MAGE/MAE releases) or a plain state dict; ``module.`` is stripped."""
    sd = ckpt
    for key in ('state_dict', 'model'):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}


# Encoder keys of ADDPViT. Release names on the left when they differ from ours.
_ENCODER_RENAMES = [(r'^tokenizer_norm\.', 'pre_norm.')]
_ENCODER_KEYS = re.compile(
    r'^(cls_token|pos_embed|patch_embed\..*|blocks\.\d+\..*|norm\..*|pre_norm\..*|fc_norm\..*)$')


def encoder_state_dict(state: Dict[str, torch.Tensor]
                       ) -> Tuple[Dict[str, torch.Tensor], List[str], Dict[str, str]]:
    """Keep the ADDP encoder's weights of any supported checkpoint, in ``ADDPViT`` key names.

    Accepts the released pretraining checkpoint (encoder + decoder + ``vqgan.*`` +
    ``token_predictor.*``), the released fine-tuning classifier, our own pretraining / downstream
    checkpoints (``backbone.*``) and converted backbone files.

    Returns ``(encoder_sd, ignored, source)``: the kept tensors, the keys left out (as named in the
    file) and, for each kept key, the name it had in the file.
    """
    if any(k.startswith('backbone.') for k in state):
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    out, ignored, source = {}, [], {}
    for key, value in state.items():
        new = key
        for pattern, repl in _ENCODER_RENAMES:
            new = re.sub(pattern, repl, new)
        if _ENCODER_KEYS.match(new):
            out[new] = value
            source[new] = key
        else:
            ignored.append(key)
    return out, ignored, source


class BackboneOnlyCheckpointError(ValueError):
    """An encoder-only file where encoder + decoder are needed (a user's mistake: the tools print
    it as one line)."""
    is_user_mistake = True


def require_full_addp_checkpoint(state: Dict[str, torch.Tensor], path: str) -> None:
    """Generation needs encoder and decoder: name the mistake when ``state`` holds only encoder
    weights (``backbone.pth`` exported by pretraining, or ``tools/convert_checkpoint.py`` output)."""
    if state and all(_ENCODER_KEYS.match(k) for k in state):
        raise BackboneOnlyCheckpointError(
            f'{path}: this is a backbone-only file; generation needs the full checkpoint, e.g. '
            'iter_300.pth (work_dirs/<pretraining config>/iter_N.pth) or the released '
            'addp-vit-*-16.pth')


def finetune_classifier_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The released fine-tuning classifier (MAE-style ``models_vit``) as an mmpretrain
    ``ImageClassifier`` state dict: encoder -> ``backbone.*``, ``head`` -> ``head.fc.*``."""
    encoder, _, _ = encoder_state_dict(state)
    out = {f'backbone.{k}': v for k, v in encoder.items()}
    for name in ('weight', 'bias'):
        if f'head.{name}' in state:
            out[f'head.fc.{name}'] = state[f'head.{name}']
    return out
