"""The config as the tools read and edit it: ``--cfg-options`` (an unknown key or type is refused
naming the closest valid ones, :func:`check_option_keys`; a config variable is honoured or
refused, :func:`apply_cfg_options`), ``--pretrained``, the work dir, ``--tensorboard``; and
:func:`memoize_config_reading`, which ``import addp_mm`` applies to mmengine's config reading."""
import collections
import difflib
import functools
import inspect
import os.path as osp
from typing import Iterable, List, Optional, Set, Tuple

from mmengine.config import Config

from addp_mm.errors import UsageError

TOOLBOX_SCOPES = ('mmdet', 'mmseg', 'mmpretrain', 'mmengine', 'addp_mm')


_MEMOIZED = '_addp_mm_memoized'
FORMATTED_KEPT = 8  # the formatted texts of the last 8 configs printed


def memoize_config_reading() -> None:
    """Let mmengine work out once per process what it recomputes on every call, with the same
    results:

    - where a ``pkg::path`` base is (``mmdet::_base_/...``): mmengine re-imports
      ``pkg_resources`` and parses every metafile of the package's model index each time
      (0.1-0.2 s; our configs name one to four such bases, read again by every load);
    - ``Config.pretty_text``'s yapf formatting (0.2-0.5 s for a detector config), which a
      training run asks for three or four times (the runner's log, its dump, the runtime-info
      hook): the formatted text is kept for the same unformatted text.

    Only results are kept, never errors (a package installed later is still found). Running it
    again changes nothing. ``Config._get_cfg_path`` and ``FormatCode`` keep the originals as
    ``__wrapped__``; the caches are their ``cache`` attributes."""
    import mmengine.config.config as config_module

    lookup = Config.__dict__.get('_get_cfg_path')
    if isinstance(lookup, staticmethod) and not getattr(lookup.__func__, _MEMOIZED, False):
        @functools.wraps(lookup.__func__)
        def get_cfg_path(cfg_path, filename):
            if '::' not in cfg_path:  # a path relative to the file: cheap, and file-dependent
                return get_cfg_path.__wrapped__(cfg_path, filename)
            if cfg_path not in get_cfg_path.cache:  # depends on the path alone
                get_cfg_path.cache[cfg_path] = get_cfg_path.__wrapped__(cfg_path, filename)
            return get_cfg_path.cache[cfg_path]
        get_cfg_path.cache = {}
        setattr(get_cfg_path, _MEMOIZED, True)
        Config._get_cfg_path = staticmethod(get_cfg_path)

    format_code = getattr(config_module, 'FormatCode', None)
    if format_code is not None and not getattr(format_code, _MEMOIZED, False):
        @functools.wraps(format_code)
        def formatted(text, style_config=None, **kwargs):
            key = (text, repr(style_config), tuple(sorted(kwargs.items())))
            if key not in formatted.cache:
                formatted.cache[key] = formatted.__wrapped__(text, style_config=style_config,
                                                             **kwargs)
                while len(formatted.cache) > FORMATTED_KEPT:
                    formatted.cache.popitem(last=False)
            formatted.cache.move_to_end(key)
            return formatted.cache[key]
        formatted.cache = collections.OrderedDict()
        setattr(formatted, _MEMOIZED, True)
        config_module.FormatCode = formatted


def cfg_options_dict(pairs: Optional[List[str]]) -> Optional[dict]:
    """``--cfg-options k=v ...`` (kept as strings by the tools' light parsers) -> dict, with
    mmengine's ``DictAction`` rules (lists, tuples, numbers, booleans, None)."""
    if not pairs:
        return None
    import argparse

    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='cfg_options')(None, namespace, pairs)
    return namespace.cfg_options


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config, apply ``--cfg-options`` and make sure the plugin is imported by it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} not found')
    cfg = Config.fromfile(path)
    if cfg_options:
        apply_cfg_options(cfg, cfg_options, path)
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    if 'addp_mm' not in imports:
        cfg.custom_imports = dict(imports=imports + ['addp_mm'], allow_failed_imports=False)
    # mmengine marks dicts inherited with ``pkg::`` with ``_scope_``; its dataloader builder passes
    # that on to the collate function (``default_collate() got an unexpected keyword '_scope_'``)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if isinstance(loader, dict) and isinstance(loader.get('collate_fn'), dict):
            loader['collate_fn'].pop('_scope_', None)
    scope = cfg.get('default_scope', None)
    if scope is not None and scope not in TOOLBOX_SCOPES:
        raise UsageError(f'{path}: default_scope={scope!r} is not one of {TOOLBOX_SCOPES}')
    return cfg


# what mmengine's Runner, the toolboxes' test-time augmentation and our tools read from a config;
# any other top-level name is a variable of the config file (substituted when the file is read)
CONFIG_KEYS = frozenset({
    'model', 'work_dir', 'experiment_name', 'default_scope', 'custom_imports', 'runner_type',
    'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg',
    'val_evaluator', 'test_evaluator', 'optim_wrapper', 'param_scheduler', 'auto_scale_lr',
    'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from', 'resume', 'launcher',
    'env_cfg', 'log_processor', 'log_level', 'visualizer', 'randomness', 'model_wrapper_cfg',
    'find_unused_parameters', 'strategy', 'tta_model', 'tta_pipeline', 'sampler', 'generate'})


def apply_cfg_options(cfg: Config, options: dict, path: str = 'the config') -> None:
    """``cfg.merge_from_dict(options)``, honouring a config variable given there.

    mmengine substitutes a config file's top-level variables (``data_root = 'data/coco/'``) where
    the file uses them when it reads the file, so ``--cfg-options data_root=X`` alone would change
    nothing. A path variable (a string) is honoured: every string of the config that is its old
    value, or starts with it as a folder, gets the new value. Any other variable is a
    :class:`UsageError` naming the keys that hold its value (those are what to set). A key that is
    neither in the config nor taken by the class it configures is refused first
    (:func:`check_option_keys`)."""
    check_option_keys(cfg, options)
    for name in [k for k in options if '.' not in k and k in cfg and k not in CONFIG_KEYS]:
        old, new = cfg[name], options[name]
        if isinstance(old, str) and old and isinstance(new, str):
            for key, holder, slot in list(_holders(cfg, lambda v: _path_under(v, old), skip=name)):
                holder[slot] = _replace_root(holder[slot], old, new)
            continue
        shown = repr(old) if len(repr(old)) < 60 else f'{type(old).__name__} value'
        keys = ([k for k, _, _ in _holders(cfg, lambda v: v == old, skip=name)]
                if isinstance(old, (str, list, tuple, dict)) else [])  # numbers: coincidences
        where = (f'set the keys that hold its value instead, e.g. --cfg-options '
                 f'{" ".join(k + "=..." for k in keys[:6])}' if keys else
                 'set the nested key that uses it instead (see the config file)')
        raise UsageError(f'--cfg-options {name}=...: {name} ({shown}) is a variable of {path}, '
                         'substituted where the file uses it when the file is read, so setting it '
                         f'afterwards changes nothing; {where}')
    cfg.merge_from_dict(options)


def _path_under(value, root: str) -> bool:
    return isinstance(value, str) and (value == root or value.startswith(root.rstrip('/') + '/'))


def _replace_root(value: str, old: str, new: str) -> str:
    if value == old:
        return new
    return new.rstrip('/') + '/' + value[len(old.rstrip('/')) + 1:]


def _holders(node, match, where: str = '', skip: Optional[str] = None):
    """``(dotted key, container, slot)`` of every value below ``node`` for which ``match`` is true
    (lists are followed; values inside tuples are neither listed nor written)."""
    items = (node.items() if isinstance(node, (dict, Config)) else
             enumerate(node) if isinstance(node, list) else ())
    for slot, value in list(items):
        key = f'{where}.{slot}' if where and isinstance(node, (dict, Config)) else (
            f'{where}[{slot}]' if where else str(slot))
        if slot == skip and not where:
            continue
        if match(value):
            yield key, node, slot
        elif isinstance(value, (dict, list)):
            yield from _holders(value, match, key)


def set_pretrained_backbone(cfg: Config, checkpoint: str) -> None:
    """``tools/train.py --pretrained FILE``: the backbone starts from ``FILE``
    (``init_cfg=dict(type='Pretrained', checkpoint=FILE)``; the backbone converts and resizes)."""
    model = cfg.get('model')
    if not isinstance(model, dict) or not isinstance(model.get('backbone'), dict):
        raise UsageError(f'--pretrained: {cfg.filename} has no model.backbone')
    model.backbone.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)


def set_frozen_precision(cfg: Config, mode: str) -> None:
    """``tools/train.py --amp MODE``: the frozen parts of a pretraining config run in ``mode``
    (``model.target_generator.precision``: :data:`~addp_mm.models.utils.precision.FROZEN_MODES`)."""
    from addp_mm.models.utils.precision import check_frozen_mode
    model = cfg.get('model')
    noiser = model.get('target_generator') if isinstance(model, dict) else None
    if not isinstance(noiser, dict) or noiser.get('type') != 'ADDPNoiser':
        raise UsageError(f'--amp {mode}: {cfg.filename} has no frozen parts '
                         "(model.target_generator of type 'ADDPNoiser'); --amp alone turns on "
                         'mixed precision')
    noiser['precision'] = check_frozen_mode(mode, '--amp')


def add_tensorboard(cfg: Config) -> None:
    """Add mmengine's ``TensorboardVisBackend`` to the config's visualizer (scalars, and the
    images the toolbox draws): ``tensorboard --logdir WORK_DIR``."""
    try:
        import tensorboard  # noqa: F401  (only whether it is installed)
    except ImportError:
        raise UsageError('--tensorboard needs the tensorboard package: pip install tensorboard')
    visualizer = dict(cfg.get('visualizer') or dict(type='Visualizer'))
    backends = list(visualizer.get('vis_backends') or [dict(type='LocalVisBackend')])
    if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    visualizer['vis_backends'] = backends
    cfg.visualizer = visualizer


def set_work_dir(cfg: Config, work_dir: Optional[str], config_path: str) -> None:
    """``--work-dir``, else the config's ``work_dir``, else ``work_dirs/<config name>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config_path))[0])


def use_tta(cfg: Config, config_path: str) -> None:
    """``--tta``: the test set through the config's ``tta_pipeline`` and the model wrapped in its
    ``tta_model`` (mmseg's ``SegTTAModel``, mmdet's ``DetTTAModel``, ...), as the toolboxes'
    own ``tools/test.py --tta`` do."""
    missing = [k for k in ('tta_model', 'tta_pipeline') if cfg.get(k) is None]
    if missing:
        raise UsageError(f'--tta: {config_path} has no {" / ".join(missing)}; add them to the config '
                         '(the ADE20k configs inherit mmseg\'s multi-scale + flip ones) or test '
                         'without --tta')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


# ----------------------------------------------------------------------------------------------
# --cfg-options keys that nothing reads
# ----------------------------------------------------------------------------------------------
# keys a dict may hold that its builder (mmengine's, the runner's) takes, not the class
BUILDER_KEYS = frozenset({'type', '_scope_', '_delete_', 'constructor', 'paramwise_cfg',
                          'priority', 'convert_to_iter_based'})
# a new key this close to a valid one is a typo (difflib's ratio)
TYPO_CUTOFF = 0.8


def check_option_keys(cfg: Config, options: dict) -> None:
    """Refuse ``--cfg-options`` keys that nothing would read, in one line naming the key and the
    closest valid ones, before anything is built: a new key in a dict with a ``type`` that the
    class's constructor does not take (its arguments, those of the base classes it hands
    ``**kwargs`` to; where a ``**kwargs`` leads nowhere known, only a near miss of a known
    argument is refused), a new key in a dict without ``type`` that is a near miss of a key there,
    a new top-level key mmengine's runner does not read, and a ``type`` that is not registered."""
    scope = cfg.get('default_scope') or 'mmengine'
    for key, value in options.items():
        path = _split_key(key)
        node, where = cfg, ()
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if node is None and where:  # mmengine merges no dict into None
                head = '.'.join(where)
                if f'{head}._delete_' in options:
                    break  # replaced whole: a new subtree
                raise UsageError(
                    f'--cfg-options {key}=...: {head} is None in the config, so there is nothing '
                    f'to set inside it; replace it whole: {head}._delete_=True and then its keys '
                    f'({head}.type=... {key}=...)')
            child = _child(node, part)
            if child is _MISSING:
                _check_new_key(cfg, options, node, where, part, scope, key)
                break  # a new subtree: its inner keys are the new entry's business
            if last and part == 'type' and isinstance(value, str) and where:
                _check_type(where, value, _scope_of(node, scope), key)
            node, where = child, where + (part, )


_MISSING = object()


def _split_key(key: str) -> Tuple[str, ...]:
    return tuple(key.split('.'))


def _child(node, part: str):
    if isinstance(node, (dict, Config)):
        return node[part] if part in node else _MISSING
    if isinstance(node, (list, tuple)) and part.lstrip('-').isdigit():
        i = int(part)
        return node[i] if -len(node) <= i < len(node) else _MISSING
    return _MISSING


def _scope_of(node, scope: str) -> str:
    return node.get('_scope_', scope) if isinstance(node, dict) else scope


def _registry_for(where: Tuple[str, ...]):
    """The registry a dict at ``where`` is built from, or ``None`` (nothing to check against)."""
    import mmengine.registry as R
    names = [p for p in where if not p.lstrip('-').isdigit()]
    if not names:
        return None
    head = names[0]
    if 'init_cfg' in names:
        return R.WEIGHT_INITIALIZERS
    if head in ('model', 'tta_model', 'data_preprocessor'):
        return R.MODELS
    if head == 'optim_wrapper':
        return R.OPTIMIZERS if 'optimizer' in names else R.OPTIM_WRAPPERS
    if head == 'param_scheduler':
        return R.PARAM_SCHEDULERS
    if head in ('default_hooks', 'custom_hooks'):
        return R.HOOKS
    if head == 'tta_pipeline' or 'pipeline' in names or 'transforms' in names:
        return R.TRANSFORMS
    if head.endswith('_dataloader'):
        return (R.DATA_SAMPLERS if names[-1] in ('sampler', 'batch_sampler') else
                R.FUNCTIONS if names[-1] == 'collate_fn' else
                R.DATASETS if 'dataset' in names or 'datasets' in names else None)
    if head in ('val_evaluator', 'test_evaluator'):
        return R.METRICS
    if head == 'visualizer':
        return R.VISBACKENDS if 'vis_backends' in names else R.VISUALIZERS
    if head in ('train_cfg', 'val_cfg', 'test_cfg') and len(where) == 1:
        return R.LOOPS
    if head == 'log_processor':
        return R.LOG_PROCESSORS
    return None


def _lookup(registry, type_name: str, scope: str):
    try:
        with registry.switch_scope_and_registry(scope) as scoped:
            return scoped.get(type_name)
    except Exception:  # an unimportable scope: nothing to check against
        return None


def _arguments(obj) -> Tuple[Set[str], bool]:
    """The keyword arguments a registered class (or function) takes, and whether that set is
    closed (no ``**kwargs`` left that could take anything)."""
    names: Set[str] = set()
    targets = ([k.__dict__['__init__'] for k in obj.__mro__ if '__init__' in k.__dict__]
               if inspect.isclass(obj) else [obj])
    for target in targets:
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):  # a C extension: unknown
            return names, False
        names |= {p.name for p in params
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {'self'}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, True
    return names, False


def _closest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> List[str]:
    return difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=cutoff)


def _check_new_key(cfg: Config, options: dict, node, where: Tuple[str, ...], part: str,
                   scope: str, key: str) -> None:
    """``part`` is new in the dict ``node`` at ``where``: refuse it if nothing would read it."""
    if not isinstance(node, (dict, Config)) or part in BUILDER_KEYS:
        return
    place = '.'.join(where) or 'the top level'
    if not where:
        if part in CONFIG_KEYS:
            return
        near = _closest(part, set(CONFIG_KEYS) | set(node))
        raise UsageError(f'--cfg-options {key}=...: {part!r} is not a key mmengine\'s runner or '
                         f'the tools read' + (f'; did you mean {", ".join(near)}?' if near else
                                              '; see the config file for the keys it has'))
    type_name = options.get('.'.join(where + ('type', )), node.get('type'))
    registry = _registry_for(where)
    target = (_lookup(registry, type_name, _scope_of(node, scope))
              if isinstance(type_name, str) and registry is not None else None)
    if target is not None:
        names, closed = _arguments(target)
        if part in names:
            return
        near = _closest(part, names)
        cls = getattr(target, '__name__', str(type_name))
        if closed or _closest(part, names, TYPO_CUTOFF):
            raise UsageError(
                f'--cfg-options {key}=...: {cls} ({place}) takes no argument {part!r}'
                + (f'; did you mean {", ".join(near)}?' if near else
                   f'; it takes {", ".join(sorted(names)[:12])}'))
        return
    near = _closest(part, [k for k in node if isinstance(k, str)], TYPO_CUTOFF)
    if near:
        raise UsageError(f'--cfg-options {key}=...: {place} has no key {part!r}; did you mean '
                         f'{", ".join(near)}? (a new key there is read by nothing unless it is '
                         'spelled as the code expects)')


def _check_type(where: Tuple[str, ...], type_name: str, scope: str, key: str) -> None:
    registry = _registry_for(where)
    if registry is None or '.' in type_name or _lookup(registry, type_name, scope) is not None:
        return
    with registry.switch_scope_and_registry(scope) as scoped:
        known = set(scoped.module_dict) | set(registry.module_dict)
        parent = getattr(scoped, 'parent', None)
        if parent is not None:
            known |= set(parent.module_dict)
    near = _closest(type_name, known)
    raise UsageError(f'--cfg-options {key}={type_name}: {type_name!r} is not registered in '
                     f'{scope}\'s {registry.name} registry'
                     + (f'; did you mean {", ".join(near)}?' if near else ''))
