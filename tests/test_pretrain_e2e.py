"""Pretraining on 2 CPU processes with the real tools (tools/dist_train.sh). One process's run, its
export and --pretrained: tests/test_readme_commands.py; exact resume: tests/test_checkpoint_resume.py."""
import os
import os.path as osp

import pytest
import torch
from conftest import free_port, run_command

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-demo-p16_1xb8-300iter_demo-64px.py')


@pytest.fixture(scope='module')
def unlabeled(tmp_path_factory):
    from demo_data import make_unlabeled
    out = tmp_path_factory.mktemp('demo') / 'unlabeled'
    make_unlabeled(str(out), seed=0, num=16, size=160)
    return str(out)


def options(data_root, iters):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.batch_size=4', f'train_cfg.max_iters={iters}',
            'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2']


@pytest.mark.slow
def test_demo_pretraining_on_two_cpu_processes(unlabeled, tmp_path):
    work = str(tmp_path / 'dist')
    proc = run_command(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work,
                        *options(unlabeled, 2)],
                       env=dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1'))
    log = proc.stdout + proc.stderr
    assert osp.isfile(osp.join(work, 'backbone.pth')), log[-3000:]
    # the environment dump is in the log file only; without GPUs it names the processes
    log_file = next(osp.join(root, f) for root, _, files in os.walk(work) for f in files
                    if f.endswith('.log'))
    text = open(log_file).read().lower()
    assert 'distributed training: true' in text, text[:3000]
    assert ('gpu number: 0 (cpu only); processes: 2' if not torch.cuda.is_available()
            else 'gpu number: 2') in text, text[:3000]
