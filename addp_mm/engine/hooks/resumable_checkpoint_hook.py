"""``ResumableCheckpointHook``: mmengine's ``CheckpointHook`` with atomic writes and exact resume.

``tools/train.py`` (through ``addp_mm.engine.runner_factory.build_runner``) uses it in place of
``CheckpointHook`` for every config, with the same options. What it changes:

- **Atomic writes.** mmengine 0.10.7 writes ``iter_N.pth`` in place, rewrites ``last_checkpoint``
  in place, and deletes the oldest kept checkpoint *before* writing the new one: a kill during a
  save leaves a truncated file (with ``max_keep_ckpts=1``, no checkpoint at all). Here the
  checkpoint goes to a hidden ``.iter_N.pth.partial`` in the same folder, is fsynced and renamed
  (``os.replace``, atomic on POSIX), then ``last_checkpoint`` is replaced the same way, and only
  then the oldest checkpoint is deleted. A kill at any point leaves ``last_checkpoint`` naming a
  complete file. Stale ``.partial`` files of a killed run are removed when training starts.
  (Non-local storage backends keep mmengine's behaviour, and so do ``save_best`` checkpoints,
  which ``--resume`` does not read.)
- **Exact resume.** The checkpoint also holds every rank's RNG states (torch CPU and current
  CUDA device, NumPy, ``random``; gathered from all ranks, about 15 KB each), restored on
  ``--resume`` right before training continues, so the mask schedule, noise and dropout draw what
  they would have drawn. With ``IterBasedTrainLoop`` only the torch states are restored: NumPy /
  ``random`` serve the data pipeline, and mmengine replays the finished iterations' batches,
  which reproduces them (restoring them before the replay would shift them). With
  ``EpochBasedTrainLoop`` (resume at an epoch boundary, no replay) all are restored. The train
  dataloader gets its own generator for its per-epoch worker base seed, which would otherwise
  draw from the global torch RNG at a different moment after a resume. Not covered: the RNG state
  inside *persistent* dataloader workers of an epoch-based loop (use non-persistent workers or
  ``num_workers=0`` where an exact resume matters).

Why a hook subclass and not a runner mixin or a file backend: the ordering problems (delete
before write, ``last_checkpoint`` rewritten in place) are in ``CheckpointHook`` itself, the hook
runs on every rank (so the RNG states can be gathered there), and swapping one hook type works
for mmengine's ``Runner`` and every runner subclass alike.
"""
import glob
import os
import random
import os.path as osp
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner.loops import IterBasedTrainLoop

PARTIAL_SUFFIX = '.partial'


def rng_state() -> dict:
    """This process's RNG states: torch (CPU, and the current CUDA device when CUDA is in use),
    NumPy and ``random`` (as plain lists, which a weights-only load accepts)."""
    state = dict(torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state['numpy'] = [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]
    version, internal, gauss_next = random.getstate()
    state['random'] = [version, list(internal), gauss_next]
    return state


def set_rng_state(state: dict, data_rng: bool) -> None:
    """Restore ``state``; NumPy and ``random`` only with ``data_rng`` (see the module docstring)."""
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])
    if data_rng and 'numpy' in state:
        kind, keys, pos, has_gauss, gauss = state['numpy']
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state['random']
        random.setstate((version, tuple(internal), gauss_next))


def atomic_replace(tmp_path: str, path: str) -> None:
    """fsync ``tmp_path``, rename it to ``path`` (atomic), fsync the folder."""
    with open(tmp_path, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
    try:
        fd = os.open(osp.dirname(osp.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover (e.g. Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str, text: str) -> None:
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}{PARTIAL_SUFFIX}')
    with open(tmp, 'w') as f:
        f.write(text)
    atomic_replace(tmp, path)


@HOOKS.register_module()
class ResumableCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) with atomic writes and RNG states (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._resumed_rng: Optional[List[dict]] = None

    # ------------------------------------------------------------------ resume
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # also called for ``load_from``; ``before_train`` restores only when training resumed
        self._resumed_rng = checkpoint.get('meta', {}).get('rng_states')

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._local() and is_main_process():
            for stale in glob.glob(osp.join(self.out_dir, f'.*{PARTIAL_SUFFIX}')):
                os.remove(stale)
        loader = runner.train_dataloader
        if getattr(loader, 'generator', False) is None:
            # the per-epoch worker base seed must not consume the global RNG (see docstring)
            seed = runner.seed if runner.seed is not None else 0
            loader.generator = torch.Generator().manual_seed(seed + get_rank())
        states, self._resumed_rng = self._resumed_rng, None
        if runner.iter == 0 or states is None:
            return
        if len(states) != get_world_size():
            print_log(f'the checkpoint holds RNG states of {len(states)} processes, this run has '
                      f'{get_world_size()}: random draws after the resume differ from an '
                      'uninterrupted run', logger='current', level=30)
            return
        # mmengine's IterBasedTrainLoop replays the finished iterations' batches, which
        # reproduces the data pipeline's NumPy / random states; EpochBasedTrainLoop resumes at an
        # epoch boundary without a replay, so they are restored too
        replays = isinstance(runner.train_loop, IterBasedTrainLoop)
        set_rng_state(states[get_rank()], data_rng=not replays)
        print_log('restored the RNG state of every rank from the checkpoint'
                  + ('' if replays else ' (torch, NumPy, random)'), logger='current')

    # ------------------------------------------------------------------ saving
    def _local(self) -> bool:
        return isinstance(getattr(self, 'file_backend', None), LocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta):
        meta = dict(meta, rng_states=all_gather_object(rng_state()))  # on every rank
        if not self._local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        # the same bookkeeping as mmengine, but the outdated checkpoint is removed after the save
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.filename_tmpl.format(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        partial = osp.join(osp.dirname(ckpt_filename), f'.{osp.basename(ckpt_filename)}{PARTIAL_SUFFIX}')
        runner.save_checkpoint(  # writes on the main process only
            self.out_dir, partial, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        atomic_replace(osp.join(self.out_dir, partial), self.last_ckpt)
        write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if outdated is not None:
            path = osp.join(self.out_dir, outdated)
            if osp.isfile(path):
                os.remove(path)
