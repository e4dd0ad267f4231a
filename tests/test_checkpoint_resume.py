"""Checkpoints written by our tools: atomic (a SIGKILL during a save leaves the previous one
loadable and ``last_checkpoint`` naming a complete file), and a SIGKILLed pretraining resumed with
``--resume`` logs the same losses and ends with the same weights as an uninterrupted run."""
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from addp_mm.engine.runner_factory import use_resumable_checkpoints

from conftest import free_port, run_command, tool_in_process
from tiny_classifier import tiny_classifier_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Runs tools/train.py, after arranging a SIGKILL of this very process at a chosen moment:
#   KILL_DURING_SAVE=NAME  half-way through writing the checkpoint whose file name contains NAME
#   KILL_BEFORE_ITER=K     when iteration K+1 is about to run
DRIVER = r'''
import os, os.path as osp, runpy, signal, sys
from mmengine.fileio import LocalBackend
from mmengine.runner.loops import EpochBasedTrainLoop, IterBasedTrainLoop

name = os.environ.get('KILL_DURING_SAVE')
if name:
    put = LocalBackend.put
    def put_and_die(self, obj, filepath):
        if name in osp.basename(str(filepath)):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return put(self, obj, filepath)
    LocalBackend.put = put_and_die
k = os.environ.get('KILL_BEFORE_ITER')
if k:
    def or_die(run_iter):
        def run_iter_or_die(self, *args, **kwargs):
            if self._iter == int(k):
                os.kill(os.getpid(), signal.SIGKILL)
            return run_iter(self, *args, **kwargs)
        return run_iter_or_die
    IterBasedTrainLoop.run_iter = or_die(IterBasedTrainLoop.run_iter)
    EpochBasedTrainLoop.run_iter = or_die(EpochBasedTrainLoop.run_iter)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def make_images(root, n, size):
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(osp.join(root, f'{i}.png'))


def train(tmp_path, args, env=None, expect_killed=False, cwd=ROOT):
    driver = tmp_path / 'driver.py'
    driver.write_text(DRIVER)
    proc = run_command(['python', str(driver), osp.join(ROOT, 'tools', 'train.py'), *args], cwd=cwd,
                       env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})}, check=False,
                       what='tools/train.py ' + ' '.join(map(str, args[:3])))
    out = proc.stdout + proc.stderr
    if expect_killed:
        assert proc.returncode == -9, (proc.returncode, out[-3000:])
    else:
        assert proc.returncode == 0, out[-4000:]
    return out


def train_here(args, capfd, cwd=ROOT):
    """``tools/train.py ARGS`` by its ``main`` in this process (one torch thread, as the runs above
    have: the same numbers bit for bit); what it printed."""
    capfd.readouterr()
    tool_in_process('train', args, cwd)
    out = capfd.readouterr()
    return out.out + out.err


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_build_runner_uses_the_resumable_checkpoint_hook():
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, max_keep_ckpts=2))))
    use_resumable_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='ResumableCheckpointHook', interval=3, max_keep_ckpts=2)
    cfg = Config(dict())  # mmengine's default checkpoint hook
    use_resumable_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='ResumableCheckpointHook', interval=1)
    cfg = Config(dict(default_hooks=dict(checkpoint=None)))  # switched off stays off
    use_resumable_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint is None


LOSS = re.compile(r'Iter\(train\)\s+\[\s*(\d+)/\d+\].*?\sloss: (\S+)')
EPOCH_LOSS = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/\d+\].*?\sloss: (\S+)')


def logged_losses(log):
    return {int(i): v for i, v in LOSS.findall(log)}


def logged_epoch_losses(log):
    return {(int(e), int(i)): v for e, i, v in EPOCH_LOSS.findall(log)}


@pytest.mark.slow
def test_demo_pretraining_killed_during_a_save_and_resumed_logs_the_same_losses(tmp_path, capfd):
    """SIGKILL half-way through writing ``iter_6.pth`` of 6 (checkpoints every 2 iterations, one
    kept: mmengine itself would delete ``iter_4.pth`` before writing ``iter_6.pth``; 12 images of
    batch 4, so the replay of the finished iterations crosses an epoch boundary): no truncated
    file under the final name, ``last_checkpoint`` names the complete ``iter_4.pth``. ``--resume``
    continues from it, removes the partial file, logs the same losses for iterations 5 and 6, and
    ends with weights and optimizer state bit-identical to an uninterrupted run's. The killed run
    is a process of its own; the uninterrupted and the resumed runs run in this process."""
    data = tmp_path / 'unlabeled'
    make_images(str(data), 12, 96)
    config = osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-demo-p16_1xb8-300iter_demo-64px.py')
    opts = ['--cfg-options', f'train_dataloader.dataset.data_root={data}', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'train_dataloader.batch_size=4',
            'train_cfg.max_iters=6', 'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2',
            'default_hooks.checkpoint.max_keep_ckpts=1', 'randomness.seed=0', 'randomness.deterministic=True']
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    reference = logged_losses(train_here([config, '--work-dir', str(full), *opts], capfd))
    assert sorted(reference) == [1, 2, 3, 4, 5, 6]
    killed = logged_losses(train(tmp_path, [config, '--work-dir', str(cut), *opts],
                                 env=dict(KILL_DURING_SAVE='iter_6.pth'), expect_killed=True))
    assert killed == reference
    assert not (cut / 'iter_6.pth').exists()  # never a truncated file under the final name
    assert (cut / '.iter_6.pth.partial').exists()  # the write really was cut half-way
    assert (cut / 'last_checkpoint').read_text().strip() == str(cut / 'iter_4.pth')
    ckpt = load(cut / 'iter_4.pth')
    assert ckpt['meta']['iter'] == 4 and len(ckpt['meta']['rng_states']) == 1
    log = train_here([config, '--work-dir', str(cut), '--resume', *opts], capfd)
    assert re.search(r'resumed epoch: \d+, iter: 4', log), log[-3000:]
    assert not (cut / '.iter_6.pth.partial').exists()
    assert sorted(p.name for p in cut.glob('iter_*.pth')) == ['iter_6.pth']
    assert (cut / 'last_checkpoint').read_text().strip() == str(cut / 'iter_6.pth')
    resumed = logged_losses(log)
    assert resumed == {5: reference[5], 6: reference[6]}, (resumed, reference)
    assert 'restored the RNG state' in log
    a, b = load(full / 'iter_6.pth'), load(cut / 'iter_6.pth')
    assert a['state_dict'].keys() == b['state_dict'].keys()
    assert all(torch.equal(v, b['state_dict'][k]) for k, v in a['state_dict'].items())
    for k, state in a['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b['optimizer']['state'][k][name]))
    assert a['optimizer']['state'] and [g['lr'] for g in a['optimizer']['param_groups']] == [
        g['lr'] for g in b['optimizer']['param_groups']]


EPOCH_REST = """
train_dataloader['dataset']['pipeline'] = [  # NumPy-drawn augmentation: its state must come back
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs')]
model['backbone']['drop_path_rate'] = 0.2  # torch-drawn
val_dataloader = dict(batch_size=3, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(type='CustomDataset', data_root=train_dataloader['dataset']['data_root'],
                                   pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
val_evaluator = dict(type='Accuracy', topk=(1, ))
val_cfg = dict()
test_dataloader, test_evaluator, test_cfg = val_dataloader, val_evaluator, val_cfg
train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=3)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.75))
auto_scale_lr = dict(base_batch_size=16)  # --auto-scale-lr: 1e-3 x 4 / 16
param_scheduler = [dict(type='CosineAnnealingLR', T_max=3, by_epoch=True)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1),
                     logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0, deterministic=True)
"""


@pytest.mark.slow
def test_epoch_run_killed_in_epoch_2_and_resumed_to_more_epochs_is_exact(tmp_path, capfd):
    """An epoch-based run (the tiny classifier with NumPy-drawn crops and flips, torch-drawn drop
    path, AdamW with layer-decay groups, a cosine lr scaled by ``--auto-scale-lr``), SIGKILLed in
    epoch 2 of 2 and resumed from ``epoch_1.pth`` with ``max_epochs`` raised to 3: epochs 2 and 3
    log the same losses as an uninterrupted 3-epoch run and end with the same weights, optimizer
    state (moments and step counts) and learning rates. The same RNG-restore code serves the demo
    Mask R-CNN's epoch-based schedule. ``tools/dist_test.sh`` on 2 processes then reports the
    metric the uninterrupted run's own evaluation of that checkpoint reported in one process. The
    killed run is a process of its own; the uninterrupted and the resumed runs run in this
    process."""
    from tiny_classifier import make_class_folders
    data = tmp_path / 'data'
    make_class_folders(str(data))  # 8 images, batch 4: 2 iterations per epoch
    cfg = tmp_path / 'tiny_epochs.py'
    cfg.write_text(tiny_classifier_config(str(data), EPOCH_REST))
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    full_log = train_here([str(cfg), '--work-dir', str(full), '--auto-scale-lr'], capfd)
    reference = logged_epoch_losses(full_log)
    assert sorted(reference) == [(e, i) for e in (1, 2, 3) for i in (1, 2)]
    # the lowest layer-decay group (0.75 ** 3 of the base lr) of the scaled lr 1e-3 x 4 / 16
    first = re.search(r'Epoch\(train\) +\[1\]\[1/2\] .*? lr: (\S+)', full_log).group(1)
    assert first == f'{2.5e-4 * 0.75 ** 3:.4e}', first
    killed = logged_epoch_losses(train(
        tmp_path, [str(cfg), '--work-dir', str(cut), '--auto-scale-lr', '--cfg-options',
                   'train_cfg.max_epochs=2'],
        env=dict(KILL_BEFORE_ITER='3'), expect_killed=True))
    assert sorted(killed) == [(1, 1), (1, 2), (2, 1)]  # killed before epoch 2's last iteration
    assert (cut / 'epoch_1.pth').exists() and not (cut / 'epoch_2.pth').exists()
    log = train_here([str(cfg), '--work-dir', str(cut), '--auto-scale-lr', '--resume'], capfd)
    assert 'resumed epoch: 1, iter: 2' in log, log[-3000:]
    assert 'restored the RNG state of every rank from the checkpoint (torch, NumPy, random)' in log
    resumed = logged_epoch_losses(log)
    assert resumed == {k: v for k, v in reference.items() if k[0] > 1}, (resumed, reference)
    a, b = load(full / 'epoch_3.pth'), load(cut / 'epoch_3.pth')
    assert (a['meta']['epoch'], a['meta']['iter']) == (b['meta']['epoch'], b['meta']['iter']) == (3, 6)
    assert all(torch.equal(v, b['state_dict'][k]) for k, v in a['state_dict'].items())
    groups_a, groups_b = a['optimizer']['param_groups'], b['optimizer']['param_groups']
    assert len(groups_a) == len(groups_b) > 2  # the layer-decay groups
    assert [g['lr'] for g in groups_a] == [g['lr'] for g in groups_b]
    assert len({g['lr'] for g in groups_a}) > 2  # per-layer rates, not one value
    states_a, states_b = a['optimizer']['state'], b['optimizer']['state']
    assert states_a.keys() == states_b.keys()
    for k, state in states_a.items():
        assert float(state['step']) == 6.0
        for name in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(torch.as_tensor(state[name]), torch.as_tensor(states_b[k][name])), (k, name)
    # the checkpoint evaluated on 2 processes (8 images, 3 a batch, split over the ranks)
    dist = run_command(['bash', osp.join(ROOT, 'tools', 'dist_test.sh'), str(cfg),
                        str(full / 'epoch_3.pth'), '2', '--work-dir', str(tmp_path / 'dist')],
                       env={**os.environ, 'OMP_NUM_THREADS': '1', 'PORT': str(free_port())},
                       what='tools/dist_test.sh on 2 ranks')
    top1 = [re.findall(r'accuracy/top1: ([0-9.]+)', text) for text in (full_log, dist.stdout + dist.stderr)]
    assert top1[0] and top1[0][-1] == top1[1][-1], top1
    dist_log = next((tmp_path / 'dist').glob('*/*.log')).read_text()
    assert 'processes: 2' in dist_log or 'GPU number: 2' in dist_log
