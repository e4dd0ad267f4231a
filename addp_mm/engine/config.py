"""The config as the tools read and edit it: ``--cfg-options`` (a config variable is honoured or
refused, :func:`apply_cfg_options`), ``--pretrained``, the work dir, ``--tensorboard``."""
import os.path as osp
from typing import List, Optional

from mmengine.config import Config

from addp_mm.errors import UsageError

TOOLBOX_SCOPES = ('mmdet', 'mmseg', 'mmpretrain', 'mmengine', 'addp_mm')


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
    :class:`UsageError` naming the keys that hold its value (those are what to set)."""
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
