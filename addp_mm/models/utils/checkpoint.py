"""The one checkpoint layer: read a file safely, unwrap it, convert a foreign format.

    read_checkpoint(path, key, source)   the object in a local file, ``torch.load(weights_only=True)``
                                         with our allow-list (:mod:`.safe_globals`), ``.npz`` /
                                         ``.npy`` with ``np.load(allow_pickle=False)``; a missing
                                         file is a ``FileNotFoundError`` naming the config key, the
                                         path and where the file comes from (:data:`WEIGHT_SOURCES`);
                                         any other pickled global is an :class:`UnsafeCheckpointError`
                                         naming it and :data:`TRUSTED_ENV` (the one way to lift it
                                         for a trusted file)
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
        model_state_dict                 any of the above -> the keys of a given model (the
                                         converter whose output matches the model best)
    load_state_dict_checked(module, state, name, ...)
                                         ``module.load_state_dict`` (its pre-hooks resize tables)
                                         that fails, naming the file and the missing / unexpected /
                                         shape-mismatched keys, instead of leaving a random model

Nothing downloads: every file is a local path.
"""
import os
import os.path as osp
import pickle
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
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


# the environment variable that lists files trusted to be unpickled in full (they may run code)
TRUSTED_ENV = 'ADDP_TRUSTED_CHECKPOINTS'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A file holds a pickled object outside our allow-list (it could run code when loaded)."""
    is_user_mistake = True  # the tools print it as one line


def trusted_files() -> List[str]:
    """The absolute paths listed in ``$ADDP_TRUSTED_CHECKPOINTS`` (``os.pathsep``-separated)."""
    value = os.environ.get(TRUSTED_ENV, '')
    return [osp.realpath(p) for p in value.split(os.pathsep) if p.strip()]


def _first_global(stream) -> Optional[str]:
    """The first global outside NumPy (whose array reconstructors an object array pickles first)
    that the pickle in ``stream`` would import (``pickletools``: nothing runs)."""
    import pickletools
    strings: List[Optional[str]] = []  # the strings pushed, in order (memo lookups included)
    memo: Dict[int, Optional[str]] = {}
    found: List[str] = []
    try:
        for op, arg, _ in pickletools.genops(stream):
            if op.name == 'GLOBAL':
                found.append(str(arg).replace(' ', '.'))
            elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                found.append(f'{strings[-2]}.{strings[-1]}')
            elif op.name == 'MEMOIZE':
                memo[len(memo)] = strings[-1] if strings else None
            elif op.name.endswith('PUT'):
                memo[arg] = strings[-1] if strings else None
            elif op.name.endswith('GET'):
                strings.append(memo.get(arg))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:
        pass
    return next((g for g in found if not g.startswith('numpy')), found[0] if found else None)


def _pickled_global(path) -> Optional[str]:
    """The first global a pickle file, or a pickled object array of a ``.npy`` / ``.npz``, would
    import (read, not run)."""
    import zipfile

    def from_npy(f):
        try:
            major, _ = np.lib.format.read_magic(f)
            (np.lib.format.read_array_header_1_0 if major == 1 else
             np.lib.format.read_array_header_2_0)(f, max_header_size=1 << 20)
        except Exception:
            return None
        return _first_global(f)

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                with z.open(name) as member:
                    found = from_npy(member) if name.endswith('.npy') else None
                if found:
                    return found
        return None
    with open(path, 'rb') as f:
        if f.read(6) == b'\x93NUMPY':
            f.seek(0)
            return from_npy(f)
        f.seek(0)
        return _first_global(f)


def _refusal(key: str, path, error: Exception) -> UnsafeCheckpointError:
    text = str(error)
    found = re.search(r'GLOBAL ([\w.]+)', text) or re.search(r"Unsupported global: ([\w.]+)", text)
    name = found.group(1) if found else _pickled_global(path)
    what = (f'it holds the pickled global {name}, which is not on the allow-list' if name
            else f'it cannot be read as weights only ({text.strip().splitlines()[0][:200]})'
            if text.strip() else 'it cannot be read as weights only')
    return UnsafeCheckpointError(
        f'{key} = {os.fspath(path)!r}: refused to load: {what}. Unpickling it could run code. Only '
        f'if you trust this file, allow it with the environment variable '
        f'{TRUSTED_ENV}={osp.realpath(path)} (several files: separated by {os.pathsep!r}).')


def read_checkpoint(path: Union[str, os.PathLike], key: str = 'checkpoint',
                    source: Optional[str] = None) -> Mapping:
    """The object in a local checkpoint file, read without running code.

    ``.npz`` / ``.npy`` files are read with ``np.load(allow_pickle=False)`` (a dict of arrays);
    everything else with ``torch.load(weights_only=True)`` and our allow-list. A file that holds
    any other pickled global is refused with an :class:`UnsafeCheckpointError` naming the global
    and :data:`TRUSTED_ENV`; a file listed there is unpickled in full.

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
    trusted = osp.realpath(path) in trusted_files()
    if os.fspath(path).endswith(('.npz', '.npy')):
        try:
            loaded = np.load(path, allow_pickle=trusted)
        except (ValueError, pickle.UnpicklingError) as e:
            if 'pickle' not in str(e):
                raise ValueError(f'{key} = {os.fspath(path)!r}: not a NumPy file ({e})') from None
            raise _refusal(key, path, e) from None
        if isinstance(loaded, np.ndarray):
            return {'array': loaded}
        with loaded:
            try:
                return {k: loaded[k] for k in loaded.files}
            except ValueError as e:  # an object array inside the archive
                raise _refusal(key, path, e) from None
    register_safe_globals()
    try:
        obj = torch.load(path, map_location='cpu', weights_only=not trusted)
    except pickle.UnpicklingError as e:
        raise _refusal(key, path, e) from None
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
    if encoder and all(_ENCODER_KEYS.match(k) for k in encoder):
        return 'encoder'
    return 'unknown'


class CheckpointKindError(ValueError):
    """A file of another kind than the one needed (a user's mistake: the tools print it as one
    line, saying which file to give)."""
    is_user_mistake = True


def require_full_addp_checkpoint(state: StateDict, path: str) -> None:
    """Generation (and continued pretraining) need encoder and decoder: a file of any other kind
    (a pretraining's ``backbone.pth``, a detector's ``epoch_N.pth``, ...) is a
    :class:`CheckpointKindError` saying what it is and which file to give."""
    kind = checkpoint_kind(state)
    if kind != 'addp':
        what = CHECKPOINT_KINDS[kind]
        raise CheckpointKindError(
            f'{path}: this is {what}; generation needs the full checkpoint, e.g. iter_300.pth '
            '(work_dirs/<pretraining config>/iter_N.pth) or the released addp-vit-*-16.pth')


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


# ----------------------------------------------------------------------------------------------
# any supported format -> a given model's keys, and a load that cannot leave a random model
# ----------------------------------------------------------------------------------------------
def model_state_dict(state: StateDict, model_keys: Iterable[str]) -> Tuple[StateDict, str]:
    """``state`` (already unwrapped) in the key names of a model whose ``state_dict()`` has
    ``model_keys``: as it is when it is one of ours, otherwise the converter whose output matches
    most keys (released fine-tuning classifier, released / our pretraining file, any ADDP encoder
    as ``backbone.*``). Returns ``(state, converter name)``."""
    own = set(model_keys)
    candidates = [('as saved', dict(state))]
    if any(k.startswith('head.fc.') for k in own):
        candidates.append(('finetune_classifier_state_dict', finetune_classifier_state_dict(state)))
    if any(k.startswith('neck.') for k in own):
        candidates.append(('addp_state_dict', addp_state_dict(state)))
    if any(k.startswith('backbone.') for k in own) and not any(k.startswith('backbone.') for k in state):
        encoder, _, _ = encoder_state_dict(state)
        candidates.append(('encoder_state_dict', {f'backbone.{k}': v for k, v in encoder.items()}))
    # the first of the best: a file of ours stays as saved
    name, best = max(candidates, key=lambda c: len(own.intersection(c[1])))
    return best, name


def summarise_keys(keys: Sequence[str], limit: int = 5) -> str:
    """``'3: a, b, c'`` / ``'120: a, b, c, d, e, ...'``."""
    keys = list(keys)
    more = ', ...' if len(keys) > limit else ''
    return f'{len(keys)}: ' + ', '.join(keys[:limit]) + more if keys else '0'


class CheckpointMismatchError(RuntimeError, ValueError):
    """A checkpoint that does not fit the model (names the file and the keys)."""
    is_user_mistake = True


_SIZE_MISMATCH = re.compile(r'size mismatch for ([^:]+): copying a param with shape (\S+) from '
                            r'checkpoint, the shape in current model is (\S+)\.')


def load_state_dict_checked(module: torch.nn.Module, state: StateDict, name: str,
                            require_all: bool = True, min_fraction: float = 0.5,
                            allow_missing: Sequence[str] = ()) -> Dict[str, List[str]]:
    """``module.load_state_dict(state, strict=False)`` (pre-hooks resize position tables) that
    raises :class:`CheckpointMismatchError` naming ``name`` and the keys when

    - a tensor's shape differs from the model's (after resizing),
    - no tensor of the model was loaded, or fewer than ``min_fraction`` of the file's tensors
      found a place in the model (another architecture that happens to share a few names),
    - ``require_all`` and a model key is missing (other than those matching a regular expression
      in ``allow_missing``) or a checkpoint key is unexpected.

    A file that fills only part of the model with all of its tensors (an encoder for a detector)
    passes unless ``require_all``.

    Returns ``dict(missing=..., unexpected=...)`` (what is left is logged by the caller).
    """
    own = list(module.state_dict().keys())
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:
        shapes = [f'{k} {a} in the file vs {b} in the model' for k, a, b in _SIZE_MISMATCH.findall(str(e))]
        if not shapes:
            raise
        raise CheckpointMismatchError(
            f'{name} does not fit this {type(module).__name__} (another architecture or size?): '
            f'shape-mismatched keys {summarise_keys(shapes, 4)}') from None
    missing = [k for k in result.missing_keys if not any(re.search(p, k) for p in allow_missing)]
    unexpected = list(result.unexpected_keys)
    loaded = len(own) - len(result.missing_keys)
    used = len(state) - len(unexpected)
    too_few = loaded == 0 or used < min_fraction * len(state)
    if too_few or (require_all and (missing or unexpected)):
        what = (f'no tensor of it fits (0 of the model\'s {len(own)})' if loaded == 0 else
                f'only {used} of its {len(state)} tensors fit the model' if too_few else
                'it does not hold every tensor of the model')
        raise CheckpointMismatchError(
            f'{name} does not fit this {type(module).__name__}: {what} (another architecture, or '
            f'a file of another format?). Missing keys {summarise_keys(missing)}; unexpected '
            f'keys {summarise_keys(unexpected)}')
    return dict(missing=missing, unexpected=unexpected)
