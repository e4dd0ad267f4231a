"""Building the runner a config asks for: its class (``runner_type``) with our checked checkpoint
loads and a readable terminal, exact-resume checkpoints, CPU-only distributed runs."""
import logging

import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from addp_mm.errors import UsageError

from .checked_checkpoint_load import CheckedCheckpointLoad
from .preflight import check_model_widths

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
        raise UsageError('--launcher slurm needs GPUs; on a CPU-only machine use tools/dist_train.sh')
    import torch.distributed as dist
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def close_process_group() -> None:
    """End the process group of a distributed run (no-op without one), as the run's last step:
    gloo threads left to the interpreter's exit can abort the process (``terminate called
    without an active exception``) after the run has finished.

    The caller drops its runner first: the runner's ``DistributedDataParallel`` holds the group,
    and a group still held keeps its threads through ``destroy_process_group``. Garbage is
    collected here, since a runner is freed only with its reference cycles."""
    import gc

    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def use_resumable_checkpoints(cfg: Config) -> None:
    """Save checkpoints with ``ResumableCheckpointHook`` (atomic writes, RNG states for exact
    resume) where the config has mmengine's ``CheckpointHook`` (or none: mmengine's default)."""
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    hooks = cfg.default_hooks
    ckpt = hooks.get('checkpoint', dict(type='CheckpointHook', interval=1))  # mmengine's default
    if isinstance(ckpt, dict) and ckpt.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        hooks['checkpoint'] = {**ckpt, 'type': 'ResumableCheckpointHook'}


# what mmengine's Runner logs while it starts: kept in the log file, left off the terminal (the
# dumps, and mmengine's notices about its own deprecated file clients, which its hooks create)
_DUMPS = ('System environment:', 'Config:\n', 'Hooks will be executed in the following order',
          '"FileClient" will be deprecated', '"HardDiskBackend" is the alias of "LocalBackend"')


class _ConsoleFilter(logging.Filter):
    """Keep the environment / config / hook-order dumps and mmengine's file-client notices off the
    terminal (they stay in the log file), and on a machine without GPUs let the log call mmengine's ``GPU number`` what it is."""

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
    mixins = (CheckedCheckpointLoad, ) + ((_ReadableConsole, ) if quiet_console else ())
    runner_cls = type(runner_cls.__name__, mixins + (runner_cls, ), {})
    runner = runner_cls.from_cfg(cfg)
    if quiet_console:
        log_file = next((h.baseFilename for h in runner.logger.handlers
                         if isinstance(h, logging.FileHandler)), None)
        if log_file is not None:
            runner.logger.info(f'environment, config and hooks: {log_file}')
    return runner
