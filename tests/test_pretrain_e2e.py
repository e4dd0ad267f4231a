"""Pretraining end to end with the real tools: the demo config trains, resumes, runs on 2 CPU
processes, and its exported backbone.pth loads into a downstream backbone."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-tiny_demo.py')


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


def run(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, **(env or {})})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
def test_demo_pretraining_trains_resumes_and_exports(unlabeled, tmp_path):
    work = str(tmp_path / 'work')
    log = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work, *options(unlabeled, 4)])
    assert 'RANDOMLY INITIALISED' in log
    assert osp.isfile(osp.join(work, 'iter_4.pth')) and osp.isfile(osp.join(work, 'backbone.pth'))
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu', weights_only=True)
    assert not any(k.startswith('target_generator.') for k in ckpt['state_dict'])
    log = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work, '--resume',
               *options(unlabeled, 6)])
    assert 'resumed' in log.lower() and osp.isfile(osp.join(work, 'iter_6.pth'))
    # the exported encoder loads into a backbone
    from addp_mm.models.backbones import ADDPViT
    backbone = ADDPViT(arch='demo', img_size=128, patch_size=16, with_cls_token=False, window_size=4,
                       window_block_indexes=(0, 1), use_rel_pos=True,
                       init_cfg=dict(type='Pretrained', checkpoint=osp.join(work, 'backbone.pth')))
    report = backbone.load_pretrained(osp.join(work, 'backbone.pth'))
    assert len(report['used']) > 20
    assert all('rel_pos' in k for k in report['initialised'])


@pytest.mark.slow
def test_demo_pretraining_on_two_cpu_processes(unlabeled, tmp_path):
    work = str(tmp_path / 'dist')
    log = run(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work, *options(unlabeled, 2)],
              env=dict(PORT='29617', OMP_NUM_THREADS='1'))
    assert osp.isfile(osp.join(work, 'backbone.pth')), log[-3000:]
    # the environment dump is in the log file only; without GPUs it names the processes
    log_file = next(osp.join(root, f) for root, _, files in os.walk(work) for f in files
                    if f.endswith('.log'))
    text = open(log_file).read().lower()
    assert 'distributed training: true' in text, text[:3000]
    assert ('gpu number: 0 (cpu only); processes: 2' if not torch.cuda.is_available()
            else 'gpu number: 2') in text, text[:3000]
