"""What ``tools/train.py`` and ``tools/test.py`` share: building the runner a config asks for,
CPU-only distributed runs, and the test-time outputs (``--out``, ``--show-dir``) of each toolbox."""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

TOOLBOX_SCOPES = ('mmdet', 'mmseg', 'mmpretrain', 'mmengine', 'addp_mm')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config, apply ``--cfg-options`` and make sure the plugin is imported by it."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} not found')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
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
        raise ValueError(f'{path}: default_scope={scope!r} is not one of {TOOLBOX_SCOPES}')
    return cfg


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


def build_runner(cfg: Config) -> Runner:
    """``runner_type`` in the config picks a registered runner (e.g. ``ADDPPretrainRunner``)."""
    use_resumable_checkpoints(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def setup_test_outputs(cfg: Config, out: Optional[str], show_dir: Optional[str], show: bool = False,
                       wait_time: float = 2.) -> None:
    """Make the toolbox of ``cfg`` write predictions to ``out`` (a ``.pkl`` file) and drawings to
    ``show_dir``, the way each toolbox's own ``tools/test.py`` does."""
    scope = cfg.get('default_scope', 'mmengine')
    if out is not None:
        if not out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out {out!r}: the predictions file must end with .pkl or .pickle')
        dump = dict(type='mmdet.DumpDetResults' if scope == 'mmdet' else 'DumpResults', out_file_path=out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]) + [dump]
    if show_dir is None and not show:
        return
    hooks = cfg.setdefault('default_hooks', {})
    hook = hooks.get('visualization')
    if hook is None:
        raise ValueError(f'--show/--show-dir: the config has no default_hooks.visualization ({scope})')
    if scope in ('mmseg', 'mmpretrain'):
        hook['interval'] = 1  # their hooks otherwise draw only every 50th / 5000th image
    if scope == 'mmpretrain':
        hook['enable'] = True
        if show_dir:
            hook['out_dir'] = show_dir
    else:  # mmdet, mmseg
        hook['draw'] = True
        if scope == 'mmdet' and show_dir:
            hook['test_out_dir'] = show_dir
        elif show_dir:
            cfg.visualizer['save_dir'] = show_dir
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time
