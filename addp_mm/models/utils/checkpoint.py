"""The one checkpoint layer: read a file safely, unwrap it, convert a foreign format.

    read_checkpoint(path, key, source)   the object in a local file, ``torch.load(weights_only=True)``
                                         with our allow-list (:mod:`.safe_globals`); a missing file
                                         is a ``FileNotFoundError`` naming the config key, the path
                                         and where the file comes from (:data:`WEIGHT_SOURCES`)
    unwrap_state_dict(obj)               the state dict inside ``{'state_dict': ...}`` (mmengine,
                                         taming), ``{'model': ...}`` (ADDP / MAGE / MAE releases) or
                                         a bare one; ``module.`` stripped
    converters (pure: a state dict in, a state dict out, tensors not copied), one per format:
        encoder_state_dict               any ADDP encoder (release pretraining or fine-tuning, ours)
                                         -> ``ADDPViT`` keys
        addp_state_dict                  released ADDP pretraining (or ours) -> ``ADDP`` keys
                                         (``backbone.*``, ``neck.*``)
        finetune_classifier_state_dict   released fine-tuning classifier -> mmpretrain
                                         ``ImageClassifier`` keys (``backbone.*``, ``head.fc.*``)
        mage_state_dict                  MAGE token predictor (or ``token_predictor.*`` of a released
                                         ADDP file) -> ``MAGETokenPredictor`` keys
        vqgan_state_dict                 taming / MAGE VQGAN (or ``vqgan.*`` of a released ADDP or
                                         MAGE file) -> ``VQGANTokenizer`` keys

Nothing downloads: every file is a local path.
"""
import os
import os.path as osp
import re
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch

from .safe_globals import register_safe_globals

StateDict = Dict[str, torch.Tensor]

# where each file comes from; every "file not found" message quotes this table
WEIGHT_SOURCES = {
    'addp': "the ADDP release (github.com/ChangyaoTian/ADDP): addp-vit-base-16.pth / "
            "addp-vit-large-16.pth (README 'Weights')",
    'vqgan': "the MAGE release (github.com/LTH14/mage): vqgan_jax_strongaug.ckpt; the released "
             "ADDP checkpoints and MAGE's mage-vit*-1600.pth also hold it under 'vqgan.' "
             "(README 'Weights')",
    'token_predictor': "the MAGE release (github.com/LTH14/mage): mage-vitb-1600.pth for ViT-B, "
                       "mage-vitl-1600.pth for ViT-L; a released ADDP checkpoint (token_predictor.*) "
                       "also works (README 'Weights')",
}


def read_checkpoint(path: Union[str, os.PathLike], key: str = 'checkpoint',
                    source: Optional[str] = None) -> Mapping:
    """``torch.load`` a local file with ``weights_only=True`` (our allow-list registered).

    Args:
        path: the local file.
        key: what names the file in a config or on a command line, for the error message
            (e.g. ``'model.target_generator.tokenizer.checkpoint'``).
        source: a key of :data:`WEIGHT_SOURCES` (or free text) saying where to get the file.
    """
    if not isinstance(path, (str, os.PathLike)) or not osp.isfile(path):
        where = WEIGHT_SOURCES.get(source, source) if source else None
        # the hint names the release's files: only for one of them, not a mistyped path of one's own
        hint = (f' It comes from {where}; put it there (nothing is downloaded).'
                if where and osp.basename(os.fspath(path)) in where else ' Check the path.')
        raise FileNotFoundError(f'{key} = {os.fspath(path) if isinstance(path, os.PathLike) else path!r}: '
                                f'file not found.{hint}')
    register_safe_globals()
    obj = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(obj, Mapping):
        raise ValueError(f'{key} = {path!r} holds a {type(obj).__name__}, not a checkpoint dict')
    return obj


def unwrap_state_dict(ckpt: Mapping) -> StateDict:
    """The state dict inside a checkpoint: ``{'state_dict': ...}`` (mmengine, taming),
    ``{'model': ...}`` (ADDP/MAGE/MAE releases) or a plain state dict; ``module.`` is stripped."""
    sd = ckpt
    for key in ('state_dict', 'model'):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}


# ----------------------------------------------------------------------------------------------
# the encoder (ADDPViT)
# ----------------------------------------------------------------------------------------------
# release names on the left when they differ from ours
_ENCODER_RENAMES = [(r'^tokenizer_norm\.', 'pre_norm.')]
_ENCODER_KEYS = re.compile(
    r'^(cls_token|pos_embed|patch_embed\..*|blocks\.\d+\..*|norm\..*|pre_norm\..*|fc_norm\..*)$')


def encoder_state_dict(state: StateDict) -> Tuple[StateDict, List[str], Dict[str, str]]:
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


def require_full_addp_checkpoint(state: StateDict, path: str) -> None:
    """Generation needs encoder and decoder: name the mistake when ``state`` holds only encoder
    weights (``backbone.pth`` exported by pretraining, or ``tools/convert_checkpoint.py`` output)."""
    keys = [k[len('backbone.'):] if k.startswith('backbone.') else k for k in state]
    if keys and all(_ENCODER_KEYS.match(k) for k in keys):
        raise BackboneOnlyCheckpointError(
            f'{path}: this is a backbone-only file; generation needs the full checkpoint, e.g. '
            'iter_300.pth (work_dirs/<pretraining config>/iter_N.pth) or the released '
            'addp-vit-*-16.pth')


def finetune_classifier_state_dict(state: StateDict) -> StateDict:
    """The released fine-tuning classifier (MAE-style ``models_vit``) as an mmpretrain
    ``ImageClassifier`` state dict: encoder -> ``backbone.*``, ``head`` -> ``head.fc.*``."""
    encoder, _, _ = encoder_state_dict(state)
    out = {f'backbone.{k}': v for k, v in encoder.items()}
    for name in ('weight', 'bias'):
        if f'head.{name}' in state:
            out[f'head.fc.{name}'] = state[f'head.{name}']
    return out


# ----------------------------------------------------------------------------------------------
# the pretraining model (ADDP: encoder + ADDPDecoder)
# ----------------------------------------------------------------------------------------------
# (release name, our name): whole keys, or prefixes of dotted keys
RELEASE_DECODER_KEYS: List[Tuple[str, str]] = [
    ('decoder_embed', 'decoder_embed'),
    ('mask_token', 'mask_token'),
    ('decoder_pos_embed_learned', 'pos_embed'),
    ('decoder_pos_mask_embed', 'pos_mask_embed'),
    ('decoder_pos_token_embed', 'pos_token_embed'),
    ('token_emb', 'token_emb'),
    ('decoder_blocks', 'blocks'),
    ('decoder_norm', 'norm'),
    ('mlm_layer', 'mlm_head'),
]
# decoder-side release parameters that no forward pass of the release uses
RELEASE_DECODER_DROPPED: List[str] = [
    'decoder_pos_embed', 'decoder_pred', 'pos_token_embed', 'pos_mask_embed']


def _matches(key: str, name: str) -> bool:
    return key == name or key.startswith(name + '.')


def release_decoder_state_dict(state: StateDict) -> StateDict:
    """Map a released ADDP state dict (``ckpt['model']``) to ``ADDPDecoder`` keys.

    Keys outside the decoder (encoder, ``vqgan.*``, ``token_predictor.*``) and the unused ones in
    :data:`RELEASE_DECODER_DROPPED` are left out.
    """
    out = {}
    for key, value in state.items():
        for old, new in RELEASE_DECODER_KEYS:
            if _matches(key, old):
                out[new + key[len(old):]] = value
                break
    return out


def addp_state_dict(state: StateDict) -> StateDict:
    """An ``ADDP`` state dict (``backbone.*``, ``neck.*``, ``head.*``) from ours or from the
    release's (encoder keys, ``tokenizer_norm``, ``decoder_*``, ``token_emb``, ``mlm_layer``).
    The frozen parts (``vqgan.*``, ``token_predictor.*``, ``target_generator.*``) are left out:
    they load from their own files."""
    if any(k.startswith('backbone.') for k in state):
        return {k: v for k, v in state.items() if k.startswith(('backbone.', 'neck.', 'head.'))}
    encoder, _, _ = encoder_state_dict(state)
    out = {f'backbone.{k}': v for k, v in encoder.items() if k != 'fc_norm'}
    out.update({f'neck.{k}': v for k, v in release_decoder_state_dict(state).items()})
    return out


# ----------------------------------------------------------------------------------------------
# the frozen parts (MAGETokenPredictor, VQGANTokenizer)
# ----------------------------------------------------------------------------------------------
def mage_state_dict(state: StateDict) -> StateDict:
    """The token-predictor weights of a MAGE or released ADDP state dict, in MAGE's key layout.

    From a MAGE ``model`` dict its ``vqgan.*`` entries are dropped (the VQGAN is a separate
    module here); from a released ADDP ``model`` dict only the ``token_predictor.*`` entries are
    kept, without that prefix (``token_predictor.vqgan.*`` dropped as well).
    """
    if any(k.startswith('token_predictor.') for k in state):
        state = {k[len('token_predictor.'):]: v for k, v in state.items()
                 if k.startswith('token_predictor.')}
    return {k: v for k, v in state.items() if not k.startswith('vqgan.')}


_VQGAN_ROOTS = ('encoder.', 'decoder.', 'quantize.')
# where the released checkpoints store the tokenizer, in the order looked for
_VQGAN_PREFIXES = ('vqgan.', 'token_predictor.vqgan.')


def vqgan_state_dict(state: StateDict, prefix: Optional[str] = None) -> StateDict:
    """The tokenizer's weights (``encoder.*``, ``decoder.*``, ``quantize.*``) of a state dict.

    Layouts: MAGE's ``vqgan_jax_strongaug.ckpt`` (un-prefixed) and the released ADDP / MAGE
    checkpoints (under ``vqgan.``). ``prefix`` selects the keys to take (``'vqgan.'``, ``''``,
    ``'token_predictor.vqgan.'``); by default the un-prefixed layout when present, otherwise
    ``vqgan.`` then ``token_predictor.vqgan.``. Other keys are dropped.
    """
    keys = list(state)
    if prefix is None:
        if any(k.startswith(_VQGAN_ROOTS) for k in keys):
            prefix = ''
        else:
            prefix = next((p for p in _VQGAN_PREFIXES if any(k.startswith(p) for k in keys)), None)
        if prefix is None:
            raise KeyError(f"no VQGAN weights: expected keys encoder.*/decoder.*/quantize.* "
                           f"(optionally under 'vqgan.'), got e.g. {keys[:5]}. The tokenizer "
                           f"comes from {WEIGHT_SOURCES['vqgan']}")
    out = {}
    for k, v in state.items():
        if k.startswith(prefix):
            name = k[len(prefix):]
            if prefix or name.startswith(_VQGAN_ROOTS):
                out[name] = v
    if not out:
        raise KeyError(f'no VQGAN weights with prefix {prefix!r}')
    return out


def load_converted(module: torch.nn.Module, checkpoint: Union[str, os.PathLike, Mapping],
                   converter, key: str, source: Optional[str] = None, **kwargs) -> None:
    """Strictly load ``converter(unwrap_state_dict(checkpoint))`` into ``module``.

    ``checkpoint`` is a local file (read with :func:`read_checkpoint`) or an already loaded
    checkpoint / state dict. A mismatch is an error naming ``key`` and the file."""
    obj = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(checkpoint, key, source)
    name = 'the given state dict' if isinstance(checkpoint, Mapping) else repr(os.fspath(checkpoint))
    try:
        state = converter(unwrap_state_dict(obj), **kwargs)
    except KeyError as e:
        raise KeyError(f'{key} = {name}: {e.args[0]}') from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f'{key} = {name} does not fit this {type(module).__name__} '
                           f'({module.extra_repr() or "check its sizes"}): {e}') from None
