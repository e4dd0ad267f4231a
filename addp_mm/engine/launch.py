"""What ``tools/train.py`` and ``tools/test.py`` share: building the runner a config asks for,
CPU-only distributed runs, the test-time outputs (``--out``, ``--show-dir``) of each toolbox, and
the checks that turn a user's mistake (missing data, checkpoint, GPU-only setting) into one clear
error before anything slow starts."""
import logging
import os
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

TOOLBOX_SCOPES = ('mmdet', 'mmseg', 'mmpretrain', 'mmengine', 'addp_mm')


class UsageError(ValueError):
    """A setting the user can fix (the tools print its message as one line, no traceback)."""
    is_user_mistake = True


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


def _dataset_paths(dataset: dict, where: str):
    """``(key, path, kind)`` for the folders (``kind`` True) and files (``kind``: the dataset's
    type) a dataset config reads (wrappers followed), relative paths joined with ``data_root`` as
    mmengine's ``BaseDataset`` does."""
    if not isinstance(dataset, dict):
        return
    for inner in ('dataset', 'datasets'):
        sub = dataset.get(inner)
        for i, d in enumerate(sub if isinstance(sub, (list, tuple)) else [sub]):
            yield from _dataset_paths(d, f'{where}.{inner}' + (f'[{i}]' if isinstance(sub, (list, tuple)) else ''))
    root = dataset.get('data_root') or ''
    if root:
        yield f'{where}.data_root', root, True
    ann = dataset.get('ann_file')
    if isinstance(ann, str) and ann:
        yield f'{where}.ann_file', ann if osp.isabs(ann) else osp.join(root, ann), dataset.get('type')
    prefix = dataset.get('data_prefix')
    if not prefix and dataset.get('split'):  # mmpretrain's ImageNet reads data_root/<split>/
        yield f'{where}.split', osp.join(root, dataset['split']), True
    prefixes = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
    for key, value in prefixes:
        if isinstance(value, str) and value:
            yield (f'{where}.data_prefix' + (f'.{key}' if key else ''),
                   value if osp.isabs(value) else osp.join(root, value), True)


def check_data(cfg: Config, loaders=('train_dataloader', 'val_dataloader')) -> None:
    """``FileNotFoundError`` naming the config key, the path and the fix when a dataset's folder or
    annotation file is missing, a :class:`UsageError` when an annotation file is empty or
    malformed (:func:`check_annotation_file`), before the runner spends time building the model."""
    for loader in loaders:
        dataloader = cfg.get(loader)
        if not isinstance(dataloader, dict):
            continue
        for key, path, kind in _dataset_paths(dataloader.get('dataset'), f'{loader}.dataset'):
            is_dir = kind is True
            if (osp.isdir if is_dir else osp.isfile)(path):
                if key.endswith('.ann_file'):
                    check_annotation_file(path, key, kind)
                continue
            demo = osp.normpath(path).startswith(osp.join('data', 'demo'))
            fix = ('make the demo data first: python tools/make_demo_data.py data/demo' if demo else
                   'see the README "Preparing data"')
            raise FileNotFoundError(
                f"{key}: {'folder' if is_dir else 'file'} '{path}' not found (looked in "
                f"{os.getcwd()}); {fix}, or point the config at your copy with "
                f"--cfg-options {key.rsplit('.', 1)[0]}.data_root=PATH")


# COCO-style annotation files larger than this are only checked for a JSON object at their start
# (the dataset parses them anyway; the check must not double a big file's loading time)
ANN_PARSE_LIMIT = 64 << 20
COCO_KEYS = ('images', 'annotations', 'categories')


def check_annotation_file(path: str, key: str, dataset_type=None) -> None:
    """A clear error naming the file and the config key for an empty or malformed ``.json``
    annotation file (and, for a COCO dataset, one without ``images`` / ``annotations`` /
    ``categories``), instead of a traceback from deep inside the dataset."""
    if not path.endswith('.json'):
        return
    fix = ('regenerate it (demo data: python tools/make_demo_data.py data/demo) or point '
           f'--cfg-options {key}=... at a COCO-format file')
    size = osp.getsize(path)
    if size == 0:
        raise UsageError(f"{key}: annotation file '{path}' is empty (0 bytes); {fix}")
    import json
    with open(path, 'rb') as f:
        if size > ANN_PARSE_LIMIT:
            start = f.read(4096).lstrip()
            if not start.startswith(b'{'):
                raise UsageError(f"{key}: annotation file '{path}' is not a JSON object; {fix}")
            return
        try:
            content = json.loads(f.read())
        except (ValueError, UnicodeDecodeError) as e:
            raise UsageError(f"{key}: annotation file '{path}' is not valid JSON ({e}); {fix}") from None
    if not isinstance(content, dict):
        raise UsageError(f"{key}: annotation file '{path}' holds a JSON {type(content).__name__}, "
                         f'not an object; {fix}')
    if isinstance(dataset_type, str) and 'coco' in dataset_type.lower():
        missing = [k for k in COCO_KEYS if k not in content]
        if missing:
            raise UsageError(f"{key}: annotation file '{path}' has no {missing} (a COCO file has "
                             f"{list(COCO_KEYS)}; found {sorted(content)[:8]}); {fix}")


def _pretrained_checkpoints(node, where='model'):
    """``(key, path)`` of every ``init_cfg=dict(type='Pretrained', checkpoint=...)`` in a model."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        for cfg in init if isinstance(init, (list, tuple)) else [init]:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' and cfg.get('checkpoint'):
                yield f'{where}.init_cfg.checkpoint', cfg['checkpoint']
        for key, value in node.items():
            if key != 'init_cfg':
                yield from _pretrained_checkpoints(value, f'{where}.{key}')


def check_checkpoints(cfg: Config) -> List[tuple]:
    """``(config key, path)`` of the checkpoint files a run would load (``load_from`` and every
    ``Pretrained`` init_cfg) that do not exist."""
    paths = list(_pretrained_checkpoints(cfg.get('model')))
    if cfg.get('load_from') and not (cfg.get('resume') and cfg.load_from == 'auto'):
        paths.append(('load_from', cfg.load_from))
    return [(key, path) for key, path in paths if isinstance(path, str) and not osp.isfile(path)]


def native_cpu_autocast(dtype: str = 'bf16') -> bool:
    """Whether this CPU computes ``dtype`` ('bf16' or 'fp16') natively (AVX512-BF16 / AMX, see
    :func:`addp_mm.models.utils.precision.native_bf16`); elsewhere torch emulates it and CPU
    autocast is many times slower than fp32."""
    if dtype == 'bf16':
        from addp_mm.models.utils.precision import native_bf16
        return native_bf16('cpu')
    return bool(getattr(torch.cpu, '_is_amx_fp16_supported', lambda: False)())


def check_amp(cfg: Config) -> None:
    """mmengine's ``AmpOptimWrapper`` runs on GPUs (and NPU/MLU/MUSA) only. On a CPU-only machine
    that computes bf16 natively, run it as ``CPUAutocastOptimWrapper`` (bf16 autocast) and say
    so; elsewhere, and for mmdet detectors (mmcv's CPU box / mask ops take float32 only), stop
    with one line and the fix (bf16 would be emulated: slower than fp32)."""
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') in ('OptimWrapper', 'NonFiniteGuardOptimWrapper'):
        for key in ('loss_scale', 'dtype'):  # left over from an AMP config: OptimWrapper rejects them
            wrapper.pop(key, None)
        return
    if torch.cuda.is_available():
        return
    if wrapper.get('type') == 'NonFiniteGuardAmpOptimWrapper':  # the pretraining configs'
        raise UsageError(
            "mixed precision (optim_wrapper.type='NonFiniteGuardAmpOptimWrapper') needs a GPU: on "
            'this machine train in full precision with --cfg-options '
            'optim_wrapper.type=NonFiniteGuardOptimWrapper (and without --amp)')
    if wrapper.get('type') != 'AmpOptimWrapper':
        return
    if cfg.get('default_scope') == 'mmdet':
        raise UsageError(
            "mixed precision (optim_wrapper.type='AmpOptimWrapper', from the config or --amp) of "
            "an mmdet detector needs a GPU: on a CPU, mmcv's box and mask ops (nms, RoIAlign) take "
            'float32 only. Train in full precision with --cfg-options '
            'optim_wrapper.type=OptimWrapper (and without --amp)')
    if native_cpu_autocast('bf16'):
        wrapper.type = 'CPUAutocastOptimWrapper'
        wrapper.pop('loss_scale', None)
        wrapper['dtype'] = 'bfloat16'
        from mmengine.logging import print_log
        print_log('mixed precision: no GPU here; this CPU computes bf16 natively, so the AMP '
                  'config runs with CPU bf16 autocast (CPUAutocastOptimWrapper)',
                  logger='current', level=logging.WARNING)
        return
    raise UsageError(
        "mixed precision (optim_wrapper.type='AmpOptimWrapper', from the config or --amp) needs a "
        'GPU or a CPU with native bf16, and this machine has neither: train in full precision '
        'with --cfg-options optim_wrapper.type=OptimWrapper (and without --amp)')


def check_model_widths(cfg: Config) -> None:
    """A :class:`UsageError` naming both keys when the neck (or head) of a model with an
    ``ADDPViT`` backbone expects another width than the backbone's (e.g. ``arch='tiny'`` with
    ``SimpleFPN(in_channels=64)``), before anything is built (it would fail deep in a
    convolution)."""
    model = cfg.get('model')
    backbone = model.get('backbone') if isinstance(model, dict) else None
    if not isinstance(backbone, dict) or backbone.get('type') != 'ADDPViT':
        return
    from addp_mm.models.backbones import ADDPViT
    arch = backbone.get('arch', 'base')
    if isinstance(arch, str):
        width = ADDPViT.arch_zoo.get(arch.lower(), {}).get('embed_dims')
    else:
        width = arch.get('embed_dims') if isinstance(arch, dict) else None
    if width is None:
        return  # an unknown arch is ADDPViT's own error
    expected = []  # (key, value) that must equal the width
    neck = model.get('neck')
    if isinstance(neck, dict) and neck.get('type') == 'SimpleFPN':
        expected.append(('model.neck.in_channels', neck.get('in_channels')))
    elif isinstance(neck, dict) and neck.get('type') in ('Feature2Pyramid',
                                                          'mmseg.Feature2Pyramid'):
        expected.append(('model.neck.embed_dim', neck.get('embed_dim')))
        for head in ('decode_head', 'auxiliary_head'):  # the pyramid keeps the width
            channels = model[head].get('in_channels') if isinstance(model.get(head), dict) else None
            if isinstance(channels, (list, tuple)):
                expected += [(f'model.{head}.in_channels[{i}]', c) for i, c in enumerate(channels)]
            else:
                expected.append((f'model.{head}.in_channels', channels))
    elif neck is None and isinstance(model.get('head'), dict) and backbone.get('out_type') in (
            'cls_token', 'avg_featmap'):
        expected.append(('model.head.in_channels', model['head'].get('in_channels')))
    for key, value in expected:
        if isinstance(value, int) and value != width:
            raise UsageError(
                f'{key}={value} does not match the backbone\'s width: model.backbone.arch='
                f'{arch!r} gives {width} channels; set {key}={width} (or another arch)')


def add_tensorboard(cfg: Config) -> None:
    """Add mmengine's ``TensorboardVisBackend`` to the config's visualizer (scalars, and the
    images the toolbox draws): ``tensorboard --logdir WORK_DIR``."""
    try:
        import tensorboard  # noqa: F401
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


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Make ``--launcher pytorch|slurm`` work on machines without GPUs too (gloo, no device_ids).

    mmengine 0.10.7 assumes CUDA when it starts a distributed run (it calls
    ``torch.cuda.set_device`` and wraps the model with ``device_ids=[local_rank]``). On a CPU-only
    machine we start the gloo process group ourselves and wrap without device ids; with GPUs
    nothing changes.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher == 'slurm':
        raise RuntimeError('--launcher slurm needs GPUs; on a CPU-only machine use tools/dist_train.sh')
    import torch.distributed as dist
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def use_resumable_checkpoints(cfg: Config) -> None:
    """Save checkpoints with ``ResumableCheckpointHook`` (atomic writes, RNG states for exact
    resume) where the config has mmengine's ``CheckpointHook`` (or none: mmengine's default)."""
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    hooks = cfg.default_hooks
    ckpt = hooks.get('checkpoint', dict(type='CheckpointHook', interval=1))  # mmengine's default
    if isinstance(ckpt, dict) and ckpt.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        hooks['checkpoint'] = {**ckpt, 'type': 'ResumableCheckpointHook'}


# what mmengine's Runner logs while it starts: kept in the log file, left off the terminal
_DUMPS = ('System environment:', 'Config:\n', 'Hooks will be executed in the following order')


class _ConsoleFilter(logging.Filter):
    """Keep the environment / config / hook-order dumps off the terminal (they stay in the log
    file), and on a machine without GPUs let the log call mmengine's ``GPU number`` what it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ''
        if not torch.cuda.is_available() and 'GPU number:' in msg and 'CPU only' not in msg:
            record.msg = msg.replace('GPU number:', 'GPU number: 0 (CPU only); processes:')
        return self.console is False or not any(d in msg[:200] for d in _DUMPS)

    def __init__(self, console: bool):
        super().__init__()
        self.console = console


class _ReadableConsole:
    """Mixed into the runner class by :func:`build_runner`: the handlers of its logger get a
    :class:`_ConsoleFilter` as soon as mmengine creates them."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        for handler in logger.handlers:
            console = type(handler) is logging.StreamHandler
            if not any(isinstance(f, _ConsoleFilter) for f in handler.filters):
                handler.addFilter(_ConsoleFilter(console))
        return logger


def build_runner(cfg: Config, quiet_console: bool = True) -> Runner:
    """``runner_type`` in the config picks a registered runner (e.g. ``ADDPPretrainRunner``); it
    loads ``load_from`` / ``--resume`` / ``tools/test.py``'s checkpoint through our converters,
    strictly (:class:`~addp_mm.engine.checked_checkpoint_load.CheckedCheckpointLoad`).
    ``quiet_console``: the startup dumps go to the log file only (the terminal shows where)."""
    use_resumable_checkpoints(cfg)
    check_model_widths(cfg)
    runner_cls = RUNNERS.get(cfg.runner_type) if 'runner_type' in cfg else Runner
    if runner_cls is None:
        raise UsageError(f"runner_type={cfg.runner_type!r} is not a registered runner")
    from .checked_checkpoint_load import CheckedCheckpointLoad
    mixins = (CheckedCheckpointLoad, ) + ((_ReadableConsole, ) if quiet_console else ())
    runner_cls = type(runner_cls.__name__, mixins + (runner_cls, ), {})
    runner = runner_cls.from_cfg(cfg)
    if quiet_console:
        log_file = next((h.baseFilename for h in runner.logger.handlers
                         if isinstance(h, logging.FileHandler)), None)
        if log_file is not None:
            runner.logger.info(f'environment, config and hooks: {log_file}')
    return runner


def setup_test_outputs(cfg: Config, out: Optional[str], show_dir: Optional[str], show: bool = False,
                       wait_time: float = 2., score_thr: Optional[float] = None,
                       draw_size: int = 0) -> None:
    """Make the toolbox of ``cfg`` write predictions to ``out`` (a ``.pkl`` file) and drawings to
    ``show_dir``, the way each toolbox's own ``tools/test.py`` does. Detection: boxes with a score
    below ``score_thr`` are not drawn, and images whose shorter side is below ``draw_size`` are
    drawn enlarged to it (so that labels are readable)."""
    scope = cfg.get('default_scope', 'mmengine')
    if out is not None:
        if not out.endswith(('.pkl', '.pickle')):
            raise UsageError(f'--out {out!r}: the predictions file must end with .pkl or .pickle')
        dump = dict(type='mmdet.DumpDetResults' if scope == 'mmdet' else 'DumpResults', out_file_path=out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]) + [dump]
    if show_dir is None and not show:
        return
    hooks = cfg.setdefault('default_hooks', {})
    hook = hooks.get('visualization')
    if hook is None:
        raise UsageError(f'--show/--show-dir: the config has no default_hooks.visualization ({scope})')
    if scope in ('mmseg', 'mmpretrain'):
        hook['interval'] = 1  # their hooks otherwise draw only every 50th / 5000th image
    if scope == 'mmpretrain':
        hook['enable'] = True
        if show_dir:
            hook['out_dir'] = show_dir
    else:  # mmdet, mmseg
        hook['draw'] = True
        if scope == 'mmdet' and score_thr is not None:
            hook['score_thr'] = score_thr
        if scope == 'mmdet' and draw_size:
            cfg.visualizer = enlarged_visualizer(cfg.visualizer, draw_size)
        if scope == 'mmdet' and show_dir:
            hook['test_out_dir'] = show_dir
        elif show_dir:
            cfg.visualizer['save_dir'] = show_dir
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time


def enlarged_visualizer(visualizer: dict, draw_size: int) -> dict:
    """The config of ``visualizer`` (mmdet's ``DetLocalVisualizer`` or a subclass) as a subclass
    that draws images whose shorter side is below ``draw_size`` enlarged to it, with the boxes and
    masks of the data sample scaled to match (fonts and lines are sized for the drawn image)."""
    import torch.nn.functional as F
    from mmdet.registry import VISUALIZERS as DET_VISUALIZERS

    base = DET_VISUALIZERS.get(visualizer.get('type', 'DetLocalVisualizer'))

    class Enlarged(base):

        def add_datasample(self, name, image, data_sample=None, *args, **kwargs):
            if draw_size > min(image.shape[:2]) and data_sample is not None:
                import mmcv
                height = image.shape[0]
                image = mmcv.imrescale(image, draw_size / min(image.shape[:2]))
                scale = image.shape[0] / height
                data_sample = data_sample.clone()
                for key in ('gt_instances', 'pred_instances'):
                    if key not in data_sample:
                        continue
                    inst = data_sample.get(key)
                    if 'bboxes' in inst and hasattr(inst.bboxes, 'rescale_'):  # mmdet boxes
                        inst.bboxes = inst.bboxes.clone()
                        inst.bboxes.rescale_([scale, scale])
                    elif 'bboxes' in inst:
                        inst.bboxes = inst.bboxes * scale
                    if 'masks' in inst and isinstance(inst.masks, torch.Tensor) and not len(inst.masks):
                        inst.masks = inst.masks.new_zeros((0, *image.shape[:2]), dtype=torch.bool)
                    elif 'masks' in inst and isinstance(inst.masks, torch.Tensor):
                        inst.masks = F.interpolate(inst.masks[None].float(), size=image.shape[:2],
                                                   mode='nearest')[0] > 0.5
                    elif 'masks' in inst:
                        inst.masks = inst.masks.resize(image.shape[:2])
            return super().add_datasample(name, image, data_sample, *args, **kwargs)

    name = f'Enlarged{base.__name__}'
    Enlarged.__name__ = Enlarged.__qualname__ = name
    DET_VISUALIZERS.register_module(name=name, module=Enlarged, force=True)
    return dict(visualizer, type=name)
