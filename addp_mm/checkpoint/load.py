"""The one way weights enter a module: :func:`load_weights`.

    load_weights(module, source, converter, policy, key) -> LoadReport

reads ``source`` (a local file, read safely by :func:`~.io.read_checkpoint`, or an already read
checkpoint / state dict), unwraps it, converts it to the module's key names (a pure function of
:mod:`.converters`, or none), loads it (the module's pre-hooks resize position tables) and checks
the result against a :class:`LoadPolicy`: which of the module's tensors must be filled, how much
of the file must find a place, whether leftovers are allowed. A load that breaks the policy is a
:class:`CheckpointMismatchError` naming the file and the keys; a load that keeps it returns a
:class:`LoadReport` (used / ignored / initialised) that every caller logs the same way.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from mmengine.logging import print_log

from ..errors import UsageError
from .converters import CHECKPOINT_KINDS, checkpoint_kind
from .io import read_checkpoint, unwrap_state_dict

__all__ = ['LoadPolicy', 'STRICT', 'COMPLETE', 'PARTIAL', 'ENCODER', 'LoadReport', 'load_weights',
           'CheckpointMismatchError', 'CheckpointKindError', 'require_full_addp_checkpoint',
           'summarise_keys']


class CheckpointMismatchError(UsageError, RuntimeError):
    """A checkpoint that does not fit the module (names the file and the keys)."""


class CheckpointKindError(UsageError):
    """A file of another kind than the one needed (says which file to give)."""


@dataclass(frozen=True)
class LoadPolicy:
    """What a load must achieve.

    Attributes:
        required: a regular expression: every module key it matches must be filled by the file
            (``''`` matches every key; ``None``: none is required).
        min_fraction: at least this fraction of the file's (converted) tensors must find a place
            in the module, and at least one must.
        unexpected: whether converted keys the module does not have are allowed (reported as
            ignored) or an error.
    """
    required: Optional[str] = ''
    min_fraction: float = 0.0
    unexpected: bool = False


# every tensor of the module from the file, nothing left over (the frozen parts' own files)
STRICT = LoadPolicy(required='', unexpected=False)
# evaluation and resume: every tensor of the module, nothing left over (a file of which less than
# half fits is reported as such: another architecture)
COMPLETE = LoadPolicy(required='', min_fraction=0.5, unexpected=False)
# training from a file (load_from): at least half of the file fits, the rest stays initialised
PARTIAL = LoadPolicy(required=None, min_fraction=0.5, unexpected=True)
# an encoder file for ADDPViT: its patch embedding and blocks (relative-position tables may be
# new), anything else of the file (a decoder, the frozen parts) ignored
ENCODER = LoadPolicy(required=r'^(patch_embed\.|blocks\.\d+\.(?!attn\.rel_pos))', unexpected=True)


def summarise_keys(keys: Sequence[str], limit: int = 5) -> str:
    """``'3: a, b, c'`` / ``'120: a, b, c, d, e, ...'``."""
    keys = list(keys)
    more = ', ...' if len(keys) > limit else ''
    return f'{len(keys)}: ' + ', '.join(keys[:limit]) + more if keys else '0'


def group_keys(keys: Sequence[str], limit: int = 6) -> str:
    """Keys grouped by their first component: ``vqgan.* (106), decoder_blocks.* (24), ...``."""
    if not keys:
        return 'none'
    groups: Dict[str, int] = {}
    for k in keys:
        head = k.split('.')[0]
        groups[head] = groups.get(head, 0) + 1
    items = [f'{h}{".*" if n > 1 or h not in keys else ""} ({n})' for h, n in groups.items()]
    more = f', +{len(items) - limit} more groups' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


@dataclass
class LoadReport:
    """What a load did: the file's keys that were ``used`` and ``ignored`` (as named in the
    file), and the module's keys left ``initialised``."""
    name: str
    converter: str
    used: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    initialised: List[str] = field(default_factory=list)

    def summary(self, module: str) -> str:
        via = '' if self.converter in ('none', 'as saved') else f' (converted with {self.converter})'
        return (f'{module}: loaded {len(self.used)} tensors from {self.name}{via}; ignored '
                f'{len(self.ignored)} ({group_keys(self.ignored)}); left initialised '
                f'{len(self.initialised)} ({group_keys(self.initialised)})')

    def log(self, module: str, logger: str = 'current') -> None:
        print_log(self.summary(module), logger=logger)

    def __getitem__(self, item: str) -> List[str]:  # report['used'], ...
        return getattr(self, item)


_SIZE_MISMATCH = re.compile(r'size mismatch for ([^:]+): copying a param with shape (.+?) from '
                            r'checkpoint, the shape in current model is (.+?)\.\s*(?:$|\n)',
                            re.M)


def _shapes(error: RuntimeError) -> List[str]:
    """``'key (a, b) in the file vs (c, d) in the model'`` for each size mismatch torch reports."""
    def shape(text):
        return tuple(int(n) for n in re.findall(r'\d+', text))
    return [f'{k} {shape(a)} in the file vs {shape(b)} in the model'
            for k, a, b in _SIZE_MISMATCH.findall(str(error))]


def load_weights(module: torch.nn.Module,
                 source: Union[str, os.PathLike, Mapping],
                 converter: Optional[Callable[..., Mapping]] = None,
                 policy: LoadPolicy = STRICT,
                 key: str = 'checkpoint',
                 name: Optional[str] = None,
                 fix: str = '',
                 **converter_kwargs) -> LoadReport:
    """Load ``converter(unwrap_state_dict(source))`` into ``module`` under ``policy``.

    Args:
        module: what receives the weights; its load-state-dict pre-hooks run (tables resized).
        source: a local file (read with :func:`read_checkpoint`) or a read checkpoint / state dict.
        converter: a pure state-dict converter of :mod:`.converters` (``None``: as saved).
        policy: see :class:`LoadPolicy`.
        key: how a config or command line names the file, for messages.
        name: how to name ``source`` in messages (default: its path).
        fix: what to do instead, added to the message when the file is of another kind.

    Returns:
        the :class:`LoadReport`; a broken policy raises :class:`CheckpointMismatchError`.
    """
    if isinstance(source, Mapping):
        checkpoint, name = source, name or 'the given checkpoint'
    else:
        checkpoint, name = read_checkpoint(source, key), name or repr(os.fspath(source))
    label = f'{key} = {name}'
    what = type(module).__name__ + (f'({module.extra_repr()})' if module.extra_repr() else '')
    raw = unwrap_state_dict(checkpoint)
    try:
        state = dict(converter(raw, **converter_kwargs)) if converter is not None else dict(raw)
    except KeyError as e:
        raise CheckpointMismatchError(f'{label}: {e.args[0]}') from None
    own = list(module.state_dict().keys())
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:
        shapes = _shapes(e)
        if not shapes:
            raise
        raise CheckpointMismatchError(
            f'{label} does not fit this {what} (another architecture or size?): '
            f'shape-mismatched keys {summarise_keys(shapes, 4)}') from None
    # what the file holds that does not reach the module: keys the converter left out (not of
    # this format) and converted keys the module does not have
    converted = {id(v) for v in state.values()}
    dropped = [k for k, v in raw.items() if id(v) not in converted]
    unexpected = list(result.unexpected_keys)
    missing = list(result.missing_keys)
    used = len(state) - len(unexpected)
    required = [k for k in missing if policy.required is not None and re.search(policy.required, k)]
    too_few = used == 0 or used < policy.min_fraction * len(state)
    if too_few or required or (unexpected and not policy.unexpected):
        problem = (f"no tensor of it fits (0 of the model's {len(own)})" if used == 0 else
                   f'only {used} of its {len(state)} tensors fit the model' if too_few else
                   'it does not hold every tensor the model needs' if required else
                   'it holds tensors the model does not have')
        missing, unexpected = required or missing, unexpected + dropped
        hint = _which_file(checkpoint_kind(raw), checkpoint_kind(dict.fromkeys(own)), fix)
        if hint:  # the advice first, the keys grouped after it
            raise CheckpointMismatchError(
                f'{label}: {hint} ({problem}: missing {group_keys(missing, 3)}; unexpected '
                f'{group_keys(unexpected, 3)})')
        raise CheckpointMismatchError(
            f'{label} does not fit this {type(module).__name__}: {problem} (another architecture, or '
            f'a file of another format?); missing keys {summarise_keys(missing, 3)}; unexpected '
            f'keys {summarise_keys(unexpected, 3)}')
    # the file's own names of what was used and what not (converters pass tensors through)
    taken = {id(state[k]) for k in state if k not in set(unexpected)}
    report = LoadReport(name=name, converter=getattr(converter, '__name__', 'none'))
    for k, v in raw.items():
        (report.used if id(v) in taken else report.ignored).append(k)
    report.initialised = missing
    return report


def _which_file(file_kind: str, model_kind: str, fix: str = '') -> str:
    """What the file is, when it is of another kind than the module's, and ``fix``."""
    if file_kind == model_kind or file_kind == 'unknown':
        return ''
    return f"this is {CHECKPOINT_KINDS[file_kind]}, not a checkpoint of this model" + (
        f'; {fix}' if fix else '')


def require_full_addp_checkpoint(state: Mapping, path: str) -> None:
    """Generation (and continued pretraining) need encoder and decoder: a file of any other kind
    (a pretraining's ``backbone.pth``, a detector's ``epoch_N.pth``, ...) is a
    :class:`CheckpointKindError` saying what it is and which file to give."""
    kind = checkpoint_kind(state)
    if kind != 'addp':
        raise CheckpointKindError(
            f'{path}: this is {CHECKPOINT_KINDS[kind]}; generation needs the full checkpoint, e.g. '
            'iter_300.pth (work_dirs/<pretraining config>/iter_N.pth) or the released '
            'addp-vit-*-16.pth')
