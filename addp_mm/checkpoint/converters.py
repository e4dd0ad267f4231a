"""Converters: one pure function per foreign checkpoint format (a state dict in, a state dict in
our modules' key names out; tensors are not copied), as timm's ``checkpoint_filter_fn``.

    encoder_state_dict              any ADDP encoder (release pretraining or fine-tuning, ours,
                                    converted) -> ``ADDPViT`` keys
    finetune_classifier_state_dict  the released fine-tuning classifier -> mmpretrain
                                    ``ImageClassifier`` keys (``backbone.*``, ``head.fc.*``)
    release_decoder_state_dict      the released pretraining decoder -> ``ADDPDecoder`` keys
    addp_state_dict                 released or our pretraining -> ``ADDP`` keys (``backbone.*``,
                                    ``neck.*``)
    mage_state_dict                 MAGE token predictor (or ``token_predictor.*`` of a released
                                    ADDP file) -> ``MAGETokenPredictor`` keys
    vqgan_state_dict                taming / MAGE VQGAN (or ``vqgan.*`` of a released file) ->
                                    ``VQGANTokenizer`` keys
    timm_vit_state_dict             any ADDP encoder -> timm ``VisionTransformer`` keys
    model_state_dict                any of the above -> a given model's keys (the best match)

:func:`checkpoint_kind` tells what a state dict is, for messages that say which file to give.
"""
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from .sources import WEIGHT_SOURCES

__all__ = ['encoder_state_dict', 'finetune_classifier_state_dict', 'release_decoder_state_dict',
           'addp_state_dict', 'mage_state_dict', 'vqgan_state_dict', 'model_state_dict',
           'rename_encoder_keys', 'timm_vit_state_dict', 'checkpoint_kind', 'CHECKPOINT_KINDS', 'RELEASE_DECODER_KEYS',
           'RELEASE_DECODER_DROPPED', 'ENCODER_KEYS']

StateDict = Dict[str, torch.Tensor]

# ----------------------------------------------------------------------------------------------
# the encoder (ADDPViT)
# ----------------------------------------------------------------------------------------------
# release names on the left when they differ from ours
_ENCODER_RENAMES = [(r'^tokenizer_norm\.', 'pre_norm.')]
ENCODER_KEYS = re.compile(
    r'^(cls_token|pos_embed|patch_embed\..*|blocks\.\d+\..*|norm\..*|pre_norm\..*|fc_norm\..*)$')


def _encoder_name(key: str) -> Optional[str]:
    """Our name of an encoder key of any ADDP file, else ``None``."""
    for pattern, repl in _ENCODER_RENAMES:
        key = re.sub(pattern, repl, key)
    return key if ENCODER_KEYS.match(key) else None


def encoder_state_dict(state: Mapping) -> StateDict:
    """The ADDP encoder's weights of any supported file, in ``ADDPViT`` key names.

    Accepts the released pretraining checkpoint (encoder + decoder + ``vqgan.*`` +
    ``token_predictor.*``), the released fine-tuning classifier, our pretraining / downstream
    checkpoints (``backbone.*``) and converted backbone files."""
    if any(k.startswith('backbone.') for k in state):
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    out = {}
    for key, value in state.items():
        name = _encoder_name(key)
        if name is not None:
            out[name] = value
    return out


def rename_encoder_keys(state: Dict, prefix: str = '') -> None:
    """In place, for the load-state-dict pre-hook of an encoder whose keys start with ``prefix``
    (``'backbone.'`` inside a detector, ``''`` on its own), so that every load path takes what
    ``init_cfg`` takes:

    * a release file read by a generic loader (``{'model': state_dict}``) is unwrapped;
    * a whole-model file given for the encoder alone (its encoder under ``prefix + 'backbone.'``,
      e.g. a pretraining's ``backbone.pth`` or a detector's checkpoint) moves up to ``prefix``;
    * the release's names become ours (``tokenizer_norm.`` -> ``pre_norm.``).

    Keys of other parts are left as they are (the load reports them as unexpected). A pre-hook
    sees only the keys under its own prefix: a file for a whole model must name the encoder's
    keys ``backbone.*`` (as ``backbone.pth`` and ``tools/convert_checkpoint.py`` do)."""
    wrapped = state.get(prefix + 'model')
    if isinstance(wrapped, Mapping):  # a release file ({'model': ...}) read by a generic loader
        del state[prefix + 'model']
        for key, value in wrapped.items():
            state.setdefault(prefix + key, value)
    inner = prefix + 'backbone.'
    if not any(k.startswith(prefix) and _encoder_name(k[len(prefix):]) is not None for k in state):
        for key in [k for k in state if k.startswith(inner)]:
            state[prefix + key[len(inner):]] = state.pop(key)
    for key in [k for k in state if k.startswith(prefix)]:
        name = _encoder_name(key[len(prefix):])
        if name is not None and prefix + name != key:
            state[prefix + name] = state.pop(key)


def timm_vit_state_dict(state: Mapping) -> StateDict:
    """The ADDP encoder of any supported file in timm ``VisionTransformer`` key names (our
    ``pre_norm`` is timm's ``norm_pre``); ``TimmADDPViT`` fits the tables to its grid on load."""
    return {('norm_pre.' + k[len('pre_norm.'):] if k.startswith('pre_norm.') else k): v
            for k, v in encoder_state_dict(state).items()}


def finetune_classifier_state_dict(state: Mapping) -> StateDict:
    """The released fine-tuning classifier (MAE-style ``models_vit``) as an mmpretrain
    ``ImageClassifier`` state dict: encoder -> ``backbone.*``, ``head`` -> ``head.fc.*``."""
    out = {f'backbone.{k}': v for k, v in encoder_state_dict(state).items()}
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


def release_decoder_state_dict(state: Mapping) -> StateDict:
    """A released ADDP state dict (``ckpt['model']``) -> ``ADDPDecoder`` keys; the encoder,
    ``vqgan.*``, ``token_predictor.*`` and :data:`RELEASE_DECODER_DROPPED` are left out."""
    out = {}
    for key, value in state.items():
        for old, new in RELEASE_DECODER_KEYS:
            if key == old or key.startswith(old + '.'):
                out[new + key[len(old):]] = value
                break
    return out


def addp_state_dict(state: Mapping) -> StateDict:
    """An ``ADDP`` state dict (``backbone.*``, ``neck.*``) from ours or from the release's. The
    frozen parts (``vqgan.*``, ``token_predictor.*``, ``target_generator.*``) are left out: they
    load from their own files."""
    if any(k.startswith(('backbone.', 'neck.')) for k in state):  # ours (the release has neither)
        return {k: v for k, v in state.items() if k.startswith(('backbone.', 'neck.'))}
    out = {f'backbone.{k}': v for k, v in encoder_state_dict(state).items()
           if not k.startswith('fc_norm')}
    out.update({f'neck.{k}': v for k, v in release_decoder_state_dict(state).items()})
    return out


# ----------------------------------------------------------------------------------------------
# the frozen parts (MAGETokenPredictor, VQGANTokenizer)
# ----------------------------------------------------------------------------------------------
def mage_state_dict(state: Mapping) -> StateDict:
    """The token predictor of a MAGE file (its ``vqgan.*`` dropped), of a released ADDP file
    (``token_predictor.*``, without that prefix and without ``token_predictor.vqgan.*``) or of a
    ``MAGETokenTrainer`` checkpoint (``token_predictor.*``), in MAGE's key layout."""
    if any(k.startswith('token_predictor.') for k in state):
        state = {k[len('token_predictor.'):]: v for k, v in state.items()
                 if k.startswith('token_predictor.')}
    return {k: v for k, v in state.items() if not k.startswith('vqgan.')}


_VQGAN_ROOTS = ('encoder.', 'decoder.', 'quantize.')
# where the released checkpoints store the tokenizer, in the order looked for
_VQGAN_PREFIXES = ('vqgan.', 'token_predictor.vqgan.', 'tokenizer.')


def vqgan_state_dict(state: Mapping, prefix: Optional[str] = None) -> StateDict:
    """The tokenizer's weights (``encoder.*``, ``decoder.*``, ``quantize.*``) of a state dict.

    Layouts: MAGE's ``vqgan_jax_strongaug.ckpt`` (un-prefixed), the released ADDP / MAGE
    checkpoints (under ``vqgan.``) and a ``VQAutoencoder`` checkpoint (under ``tokenizer.``).
    ``prefix`` selects the keys to take; by default the un-prefixed layout when present, otherwise
    the first of ``vqgan.``, ``token_predictor.vqgan.``, ``tokenizer.`` found. Other keys are
    dropped."""
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


# ----------------------------------------------------------------------------------------------
# any supported format -> a given model's keys
# ----------------------------------------------------------------------------------------------
def model_state_dict(state: Mapping, model_keys: Iterable[str]) -> Tuple[StateDict, str]:
    """``state`` in the key names of a model whose ``state_dict()`` has ``model_keys``: as it is
    when it is one of ours, otherwise the converter whose output matches most keys (released
    fine-tuning classifier, released / our pretraining file, any ADDP encoder as ``backbone.*``).
    Returns ``(state, converter name)``."""
    own = set(model_keys)
    candidates = [('as saved', dict(state))]
    if any(k.startswith('head.fc.') for k in own):
        candidates.append(('finetune_classifier_state_dict', finetune_classifier_state_dict(state)))
    if any(k.startswith('neck.') for k in own):
        candidates.append(('addp_state_dict', addp_state_dict(state)))
    if any(k.startswith('backbone.') for k in own) and not any(k.startswith('backbone.') for k in state):
        candidates.append(('encoder_state_dict',
                           {f'backbone.{k}': v for k, v in encoder_state_dict(state).items()}))
    # the first of the best: a file of ours stays as saved
    name, best = max(candidates, key=lambda c: len(own.intersection(c[1])))
    return best, name


# what a file holds, told by its keys (:func:`checkpoint_kind`), for messages naming the file to give
CHECKPOINT_KINDS = {
    'addp': 'a full ADDP pretraining checkpoint (encoder + decoder)',
    'encoder': 'a backbone-only file (encoder weights)',
    'detector': 'an mmdet detector checkpoint (rpn_head.*, roi_head.*)',
    'segmenter': 'an mmseg segmenter checkpoint (decode_head.*)',
    'classifier': 'a classifier checkpoint (backbone + head)',
    'token_predictor': 'a MAGE token predictor checkpoint',
    'tokenizer': 'a VQGAN tokenizer checkpoint',
    'unknown': 'a checkpoint of no model addp-mm knows',
}


def checkpoint_kind(state: Mapping) -> str:
    """Which key of :data:`CHECKPOINT_KINDS` an (unwrapped) state dict is, by its key names."""
    keys = list(state)

    def has(*prefixes):
        return any(k.startswith(prefixes) for k in keys)

    if has('neck.mlm_head.') or (has('mlm_layer.') and 'token_emb.weight' in state):
        return 'addp'  # ours (ADDPDecoder as the neck) or the release's
    if has('rpn_head.', 'roi_head.', 'bbox_head.'):
        return 'detector'
    if has('decode_head.'):
        return 'segmenter'
    if has('token_emb.word_embeddings.', 'token_predictor.token_emb.word_embeddings.'):
        return 'token_predictor'  # MAGE's file, or MAGETokenTrainer's
    if has(*_VQGAN_ROOTS, 'tokenizer.encoder.'):
        return 'tokenizer'
    if has('head.') and has('backbone.', 'blocks.'):
        return 'classifier'
    encoder = [k[len('backbone.'):] if k.startswith('backbone.') else k for k in keys]
    if encoder and all(ENCODER_KEYS.match(k) for k in encoder):
        return 'encoder'
    return 'unknown'
