"""The user's main job, end to end with the real tools, for the segmentation and classification
demos: each config trains for a moment with tools/train.py, then tools/test.py reports its metric
(above chance), writes predictions (--out) and drawings (--show-dir). The tools run here by their
``main``; the detection demo's run, its training a command line, is the quick start's
(tests/test_readme_commands.py)."""
import glob
import math
import os.path as osp
import re

import pytest
from conftest import tool, tool_in_process

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'demo')

CASES = {
    # 32 iterations at the config's lr without its 100-iteration warm-up (see BEATS_CHANCE)
    'ade': ('upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py',
            ['train_cfg.max_iters=32', 'train_cfg.val_interval=32', 'default_hooks.checkpoint.interval=32',
             'param_scheduler=[]'],
            'iter_32.pth', ['mIoU', 'mAcc', 'aAcc']),
    'imagenet': ('vit-demo-p16_1xb32-30e_demo-in1k-128px.py',
                 ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1'],
                 'epoch_1.pth', ['accuracy/top1']),
}


# What each short run must exceed (measured on the conftest demo data, batch 2, seeds 0, 1, 2; the
# configs' seed is 0):
# - classification: chance is 25 % top-1 (4 balanced classes, 20 val images); one epoch (8
#   iterations) gave 70.0, 70.0, 70.0 % (14 of 20): > 45 % (at least 10 of 20; P = 0.014 by
#   chance) keeps four images of margin.
# - segmentation: the val masks are 86.3 % background, so predicting background everywhere scores
#   mIoU 21.6 / mAcc 25.0 (4 classes present); 32 iterations without warm-up gave mIoU 33.8, 37.0,
#   42.1 and mAcc 44.1, 48.6, 44.5 (with the warm-up, or 16 iterations, it stays at chance: mIoU
#   2.8 after 4, 19.8-38.0 after 16).
BEATS_CHANCE = {'accuracy/top1': 45.0, 'mIoU': 28.0, 'mAcc': 35.0}


def run_test_tool(args, cwd):
    """``tools/test.py ARGS`` in this process: the metrics it returns, and the text of the log
    file it wrote under ``--work-dir``."""
    metrics = tool_in_process('test', args, cwd)
    work = args[args.index('--work-dir') + 1]
    log_file = max(glob.glob(osp.join(str(work), '*', '*.log')), key=osp.getmtime)
    return metrics, open(log_file).read()


@pytest.mark.slow
@pytest.mark.parametrize('task', sorted(CASES))
def test_demo_train_then_test(task, demo_cwd):
    config, options, ckpt_name, metrics = CASES[task]
    config = osp.join(DEMO, config)
    work = demo_cwd / f'work_{task}'
    opts = ['--cfg-options', *options, 'train_dataloader.batch_size=2']
    tool_in_process('train', [config, '--work-dir', str(work), *opts], demo_cwd)
    ckpt = work / ckpt_name
    assert ckpt.is_file()
    out_file = demo_cwd / f'{task}_preds.pkl'
    reported, log = run_test_tool([config, ckpt, '--work-dir', work, '--out', out_file,
                                     '--show-dir', f'vis_{task}'], demo_cwd)
    for name in metrics:
        found = re.findall(rf'{re.escape(name)}: (-?[0-9.]+|nan)', log)
        assert found, f'no {name} in the test log: {log[-2000:]}'
        assert float(found[-1]) == pytest.approx(reported[name], abs=0.01), (name, reported)
        assert math.isfinite(reported[name]), (name, reported)
        if name in BEATS_CHANCE:
            assert reported[name] > BEATS_CHANCE[name], (name, reported, BEATS_CHANCE[name])
    assert out_file.is_file() and out_file.stat().st_size > 0
    # --show-dir is relative to the current folder and its absolute path is the last line printed
    vis = demo_cwd / f'vis_{task}'
    drawings = [p for p in glob.glob(str(vis / '**' / '*.*'), recursive=True)
                if p.endswith(('.png', '.jpg'))]
    assert drawings, f'no drawings written for {task}'
    assert f'{len(drawings)} drawings in {vis}' in log, log[-1000:]


def test_coco_test_dev_route_writes_the_submission_files(demo_cwd):
    """The test-dev config on the demo data (its val images listed without annotations): the
    result files load with pycocotools and hold one entry per predicted instance."""
    import pickle

    import torch
    from pycocotools.coco import COCO

    from addp_mm.apis.export import build_model
    config = osp.join(DEMO, 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px-test-dev.py')
    torch.manual_seed(0)
    model, _ = build_model(config, None)  # random weights: every box scores about 1 / 5
    ckpt = demo_cwd / 'test_dev_random.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    preds = demo_cwd / 'test_dev_preds.pkl'
    metrics, _ = run_test_tool([config, ckpt, '--work-dir', demo_cwd / 'work_test_dev', '--out',
                                  preds], demo_cwd)
    assert not any('mAP' in k for k in metrics)  # format only: no metric
    info = COCO(str(demo_cwd / 'data/demo/coco/annotations/image_info_val2017.json'))
    assert 'annotations' not in info.dataset
    with open(preds, 'rb') as f:
        predicted = pickle.load(f)
    count = sum(len(p['pred_instances']['scores']) for p in predicted)
    assert count > 0
    prefix = demo_cwd / 'work_dirs/demo_test-dev/mask-rcnn_vit-demo'
    for kind in ('bbox', 'segm'):
        results = info.loadRes(str(prefix) + f'.{kind}.json')
        assert len(results.anns) == count, kind
        assert set(results.getImgIds()) <= set(info.getImgIds())
        assert all(a['category_id'] in info.getCatIds() for a in results.anns.values())


def test_ade_multi_scale_flip_tta_runs_and_reports_miou(demo_cwd):
    """tools/test.py --tta on the demo segmenter: mmseg's SegTTAModel over the config's
    tta_pipeline (3 scales x 2 flips) evaluates and reports mIoU; without tta entries it is a
    one-line error naming the config."""
    import torch

    from addp_mm.apis.export import build_model
    from addp_mm.errors import UsageError
    config = osp.join(DEMO, 'upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py')
    torch.manual_seed(0)
    model, _ = build_model(config, None)
    ckpt = demo_cwd / 'ade_random.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    work = demo_cwd / 'work_ade_tta'
    metrics, logged = run_test_tool([config, ckpt, '--work-dir', work, '--tta'], demo_cwd)
    assert math.isfinite(metrics['mIoU']), metrics
    assert re.search(r'mIoU: -?[0-9.]+', logged)
    assert "type='SegTTAModel'" in logged and 'TestTimeAug' in logged
    with pytest.raises(UsageError, match=r'--tta: .*vit-demo-p16_1xb32-30e.*has no tta_model / tta_pipeline'):
        tool('test').main([osp.join(DEMO, 'vit-demo-p16_1xb32-30e_demo-in1k-128px.py'),
                           str(ckpt), '--tta'])
