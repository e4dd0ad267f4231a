"""The user's main job, end to end with the real tools: each demo config trains for a moment with
tools/train.py, then tools/test.py reports its metric, writes predictions (--out) and drawings
(--show-dir)."""
import glob
import math
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'demo')

CASES = {
    # 8 epochs (32 iterations) at lr 1e-3 without warm-up (see BEATS_CHANCE)
    'coco': ('mask-rcnn_addp-vit-demo_demo-coco.py',
             ['train_cfg.max_epochs=8', 'train_cfg.val_interval=8', 'default_hooks.checkpoint.interval=8',
              'param_scheduler=[]', 'optim_wrapper.optimizer.lr=0.001'],
             'epoch_8.pth', ['coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP_50']),
    # 32 iterations at the config's lr without its 100-iteration warm-up (see BEATS_CHANCE)
    'ade': ('upernet_addp-vit-demo_demo-ade-128x128.py',
            ['train_cfg.max_iters=32', 'train_cfg.val_interval=32', 'default_hooks.checkpoint.interval=32',
             'param_scheduler=[]'],
            'iter_32.pth', ['mIoU', 'mAcc', 'aAcc']),
    'imagenet': ('addp-vit-demo_demo-in1k-128px.py',
                 ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1'],
                 'epoch_1.pth', ['accuracy/top1']),
}


# What each short run must exceed (measured on this fixture's data, batch 2, seeds 0, 1, 2; the
# configs' seed is 0):
# - classification: chance is 25 % top-1 (4 balanced classes, 8 val images); one epoch (8
#   iterations) gave 75.0, 75.0, 62.5 %: > 50 % (at least 5 of 8; P = 0.027 by chance) holds with
#   one image to spare.
# - segmentation: the val masks are 86.3 % background, so predicting background everywhere scores
#   mIoU 21.6 / mAcc 25.0 (4 classes present); 32 iterations without warm-up gave mIoU 33.8, 37.0,
#   42.1 and mAcc 44.1, 48.6, 44.5 (with the warm-up, or 16 iterations, it stays at chance: mIoU
#   2.8 after 4, 19.8-38.0 after 16).
# - detection: chance is ~0 (boxes and masks must overlap 6 objects); 8 epochs (32 iterations) at
#   lr 1e-3 without warm-up gave bbox / segm mAP@0.5 0.333 / 0.333, 0.278 / 0.278, 0.234 / 0.234
#   (mAP 0.104 / 0.100, 0.033 / 0.063, 0.095 / 0.106); with the config's lr and warm-up, 1, 4 or 8
#   epochs stay at 0.000-0.002. A broken RoI path (mAP@0.5 of 0.05-0.15) fails.
BEATS_CHANCE = {'accuracy/top1': 50.0, 'mIoU': 28.0, 'mAcc': 35.0,
                'coco/bbox_mAP_50': 0.15, 'coco/segm_mAP_50': 0.15}


@pytest.fixture(scope='module')
def demo_cwd(tmp_path_factory):
    """A working directory with data/demo/{coco,ade,imagenet}, as the demo configs expect."""
    from demo_data import make_all
    cwd = tmp_path_factory.mktemp('demo_cwd')
    make_all(str(cwd / 'data' / 'demo'), seed=0, num_train=8, num_val=4, imagenet_train=4,
             imagenet_val=2, parts=('coco', 'ade', 'imagenet'))
    return cwd


def run(args, cwd):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize('task', sorted(CASES))
def test_demo_train_then_test(task, demo_cwd):
    config, options, ckpt_name, metrics = CASES[task]
    config = osp.join(DEMO, config)
    work = demo_cwd / f'work_{task}'
    opts = ['--cfg-options', *options, 'train_dataloader.batch_size=2']
    run([osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', str(work), *opts], demo_cwd)
    ckpt = work / ckpt_name
    assert ckpt.is_file()
    out_file = demo_cwd / f'{task}_preds.pkl'
    log = run([osp.join(ROOT, 'tools', 'test.py'), config, str(ckpt), '--work-dir', str(work),
               '--out', str(out_file), '--show-dir', f'vis_{task}'], demo_cwd)
    for name in metrics:
        found = re.findall(rf'{re.escape(name)}: (-?[0-9.]+|nan)', log)
        assert found, f'no {name} in the test log: {log[-2000:]}'
        assert math.isfinite(float(found[-1])), (name, found[-1])
        if name in BEATS_CHANCE:
            assert float(found[-1]) > BEATS_CHANCE[name], (name, found[-1], BEATS_CHANCE[name])
    assert out_file.is_file() and out_file.stat().st_size > 0
    # --show-dir is relative to the current folder and its absolute path is the last line printed
    vis = demo_cwd / f'vis_{task}'
    drawings = [p for p in glob.glob(str(vis / '**' / '*.*'), recursive=True)
                if p.endswith(('.png', '.jpg'))]
    assert drawings, f'no drawings written for {task}'
    assert f'{len(drawings)} drawings in {vis}' in log, log[-1000:]
    if task == 'coco':  # the 128-px demo images are drawn at --draw-size 512 (two panels)
        from PIL import Image
        with Image.open(drawings[0]) as img:
            assert min(img.size) >= 512, img.size
