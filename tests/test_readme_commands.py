"""The command blocks of the README and docs/get_started.md, run as written (read from the pages) on
small demo data with
shortened schedules (``--cfg-options`` appended), and their outputs checked: the quick start
(training, its metric beating chance, tools/test.py reproducing it, ``--out``, ``--show-dir``),
the demo pretraining -> generation -> fine-tuning chain (and ``--pretrained`` with the exported
encoder on every demo config)."""
import glob
import math
import os
import os.path as osp
import re
import shlex

import numpy as np
import pytest
from conftest import run_command, tool_in_process

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS='1')
SMALL_DATA = ['--num-train', '8', '--num-val', '4', '--imagenet-train', '4', '--imagenet-val', '2',
              '--num-unlabeled', '8', '--unlabeled-size', '96']


def readme_commands(section: str, page: str = 'README.md'):
    """The commands of the first ```bash block under the heading ``section`` of ``page`` (line
    continuations joined, comments dropped), as argument lists."""
    text = open(osp.join(ROOT, page)).read()
    body = text[text.index(section):]
    block = re.search(r'```bash\n(.*?)```', body, re.S).group(1)
    commands = []
    for line in block.replace('\\\n', ' ').splitlines():
        line = line.split('#')[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def run(argv, cwd, ok=True):
    return run_command(argv, cwd=cwd, env=ENV, check=ok)


def in_process(argv, cwd):
    """``python tools/NAME.py ARGS`` (a command of the page) run in this process."""
    assert argv[0] == 'python' and argv[1].startswith('tools/'), argv
    return tool_in_process(osp.basename(argv[1])[:-3], argv[2:], cwd)


@pytest.fixture(scope='module')
def checkout(tmp_path_factory):
    """A copy of the places the commands read (tools/, configs/) in a fresh folder, so that
    work_dirs/ and data/ are made there, as in a new clone."""
    root = tmp_path_factory.mktemp('clone')
    for name in ('tools', 'configs', 'addp_mm'):
        os.symlink(osp.join(ROOT, name), root / name)
    return root


def metric(log: str, name: str) -> float:
    found = re.findall(rf'{re.escape(name)}: (-?[0-9.]+)', log)
    assert found, f'no {name} in the log: {log[-2000:]}'
    return float(found[-1])


# The quick start's 8 epochs at lr 1e-3 without the config's warm-up, batch 2 on 8 training images
# (32 iterations), must beat chance (~0: boxes and masks must overlap 6 objects): measured bbox /
# segm mAP@0.5 0.333 / 0.333, 0.278 / 0.278, 0.234 / 0.234 for seeds 0, 1, 2; with the config's lr
# and warm-up, 1, 4 or 8 epochs stay at 0.000-0.002, and a broken RoI path gives 0.05-0.15.
QUICK_START_BEATS = ['train_dataloader.batch_size=2', 'param_scheduler=[]',
                     'optim_wrapper.optimizer.lr=0.001']
BEATS_CHANCE = {'coco/bbox_mAP_50': 0.15, 'coco/segm_mAP_50': 0.15}


@pytest.mark.slow
def test_quick_start_as_written(checkout):
    make_data, train, test = readme_commands('## Quick start')
    # the getting-started page shows the same three commands
    assert readme_commands('## The demo detector', 'docs/get_started.md') == [make_data, train, test]
    assert make_data[:2] == ['python', 'tools/make_demo_data.py']
    run(make_data + SMALL_DATA + ['--only', 'coco'], checkout)
    assert (checkout / 'data/demo/coco/annotations/instances_val2017.json').is_file()
    proc = run(train + ['--cfg-options', 'default_hooks.logger.interval=1', *QUICK_START_BEATS],
               checkout)
    # the terminal stays readable: the dumps and mmengine's file-client notices are in the log
    # file only, pycocotools' loading lines are nowhere
    terminal = proc.stdout + proc.stderr
    assert 'System environment' not in terminal and 'Config:\n' not in terminal
    assert 'FileClient' not in terminal and 'loading annotations into memory' not in terminal
    assert 'creating index' not in terminal and 'Loading and preparing results' not in terminal
    log_file = re.search(r'environment, config and hooks: (\S+\.log)', proc.stdout).group(1)
    log_text = open(log_file).read()
    assert 'System environment' in log_text and 'Config:' in log_text
    assert '"FileClient" will be deprecated' in log_text
    assert 'GPU number: 0 (CPU only); processes: 1' in log_text
    trained = {name: metric(proc.stdout, name) for name in ('coco/bbox_mAP', *BEATS_CHANCE)}
    for name, bound in BEATS_CHANCE.items():
        assert trained[name] > bound, (name, trained[name])
    ckpt = test[3]
    assert ckpt.endswith('epoch_8.pth') and (checkout / ckpt).is_file()
    # (in this process: the command line and the terminal are the training's, above)
    tested = in_process(test + ['--out', 'preds.pkl', '--show-dir', 'vis', '--work-dir', 'tested'],
                        checkout)
    bbox, segm = tested['coco/bbox_mAP'], tested['coco/segm_mAP']
    assert 0 <= bbox <= 1 and 0 <= segm <= 1 and math.isfinite(bbox + segm)
    # the same checkpoint on the same val split: the test tool reproduces the training's eval
    assert bbox == trained['coco/bbox_mAP']
    # --out writes the predictions; --show-dir is relative to the current folder, its absolute
    # path is the last line printed, and the 128-px images are drawn at --draw-size 512
    import pickle
    with open(checkout / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and all('pred_instances' in p for p in preds)
    vis = checkout / 'vis'
    drawings = [p for p in glob.glob(str(vis / '**' / '*.*'), recursive=True)
                if p.endswith(('.png', '.jpg'))]
    assert len(drawings) == 4, drawings
    log_file, = glob.glob(str(checkout / 'tested' / '*' / '*.log'))
    assert f'{len(drawings)} drawings in {vis}' in open(log_file).read()
    from PIL import Image
    with Image.open(drawings[0]) as img:
        assert min(img.size) >= 512, img.size


@pytest.mark.slow
def test_pretraining_to_generation_and_fine_tuning_as_written(checkout, capfd):
    import torch
    from PIL import Image

    pretrain, generate, finetune = readme_commands('## From a demo pretraining', 'docs/get_started.md')
    run(['python', 'tools/make_demo_data.py', 'data/demo'] + SMALL_DATA + ['--only', 'unlabeled',
                                                                          'imagenet'], checkout)
    short = ['--cfg-options', 'train_cfg.max_iters=4', 'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.interval=2', 'train_dataloader.batch_size=2',
             'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False']
    # the training commands run in this process (how train.py starts as a command: the quick
    # start above); the generation command as a command line
    capfd.readouterr()
    in_process(pretrain + short, checkout)
    out = capfd.readouterr()
    losses = [float(x) for x in re.findall(r' loss: ([0-9.]+)', out.out)]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert 'RANDOMLY INITIALISED' in out.out + out.err  # the demo's frozen parts say so
    work = checkout / 'work_dirs' / 'addp_vit-demo-p16_1xb8-300iter_demo-64px'
    assert (work / 'iter_4.pth').is_file() and (work / 'backbone.pth').is_file()
    saved = torch.load(work / 'iter_4.pth', map_location='cpu', weights_only=True)['state_dict']
    assert not any(k.startswith('target_generator.') for k in saved)  # frozen parts: own files

    # generation: the page's command with the shortened run's last checkpoint
    generate = [a.replace('iter_300.pth', 'iter_4.pth') for a in generate]
    out_dir = checkout / generate[generate.index('--out-dir') + 1]
    num = int(generate[generate.index('--num-images') + 1])
    run(generate + ['--steps', '4', '--no-progress'], checkout)
    images = [np.asarray(Image.open(out_dir / f'{i:06d}.png')) for i in range(num)]
    assert all(im.shape == (64, 64, 3) for im in images)  # the demo pretraining's image size
    assert len({im.tobytes() for im in images}) == num  # different samples
    grid = np.asarray(Image.open(out_dir / 'grid.png'))
    assert grid.shape[0] > 64 and grid.shape[1] > 64
    # the same command again gives the same images (seeded; run in this process: how the tool
    # starts is checked above)
    again = checkout / 'gen_again'
    rerun = list(generate)
    rerun[rerun.index('--out-dir') + 1] = str(again)
    in_process(rerun + ['--steps', '4', '--no-progress'], checkout)
    assert all(np.array_equal(np.asarray(Image.open(again / f'{i:06d}.png')), images[i])
               for i in range(num))

    # backbone.pth is not for generation: one line that says which file to give (how the tools
    # print such a line, exit 2 and no traceback: tests/test_tools_ux.py)
    from addp_mm.errors import UsageError
    wrong = [a.replace('iter_4.pth', 'backbone.pth') for a in generate]
    with pytest.raises(UsageError) as e:
        in_process(wrong, checkout)
    assert str(e.value) == (
        'work_dirs/addp_vit-demo-p16_1xb8-300iter_demo-64px/backbone.pth: this is a backbone-only '
        'file (encoder weights); generation needs the full checkpoint, e.g. iter_300.pth '
        '(work_dirs/<pretraining config>/iter_N.pth) or the released addp-vit-*-16.pth')

    # fine-tuning from the exported encoder: its weights are the classifier's starting point
    capfd.readouterr()
    in_process(finetune + ['--tensorboard', '--cfg-options', 'train_cfg.max_epochs=1',
                           'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
                           'optim_wrapper.optimizer.lr=0', 'param_scheduler=[]'], checkout)
    top1 = metric(capfd.readouterr().out, 'accuracy/top1')
    assert 0 <= top1 <= 100
    tuned_dir = checkout / 'work_dirs/vit-demo-p16_1xb32-30e_demo-in1k-128px'
    assert [f for _, _, files in os.walk(tuned_dir) for f in files if 'tfevents' in f], \
        '--tensorboard wrote no event file'
    pretrained = torch.load(work / 'backbone.pth', map_location='cpu', weights_only=True)['state_dict']
    tuned = torch.load(checkout / 'work_dirs/vit-demo-p16_1xb32-30e_demo-in1k-128px/epoch_1.pth',
                       map_location='cpu', weights_only=True)['state_dict']
    # lr 0: the encoder blocks are exactly the pretrained ones (backbone.pth names its keys as in
    # a whole model)
    for key in ('blocks.0.attn.qkv.weight', 'blocks.3.mlp.fc2.weight', 'patch_embed.proj.weight'):
        assert torch.equal(tuned[f'backbone.{key}'], pretrained[f'backbone.{key}']), key
    # --pretrained works with every demo config: the detector's and the segmenter's backbones (128
    # px, windows and relative position in the detector) start from the 64-px encoder, its
    # position table resized, the relative-position tables it lacks left at zero
    from addp_mm.engine.config import load_config, set_pretrained_backbone
    from addp_mm.models.layers import resize_pos_embed
    from test_configs import _build
    for name in ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py', 'upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py'):
        cfg = load_config(osp.join(ROOT, 'configs', 'demo', name))
        set_pretrained_backbone(cfg, str(work / 'backbone.pth'))
        model, _ = _build(cfg)
        model.init_weights()
        own = model.backbone.state_dict()
        for key in ('blocks.0.attn.qkv.weight', 'blocks.3.mlp.fc2.weight', 'patch_embed.proj.weight'):
            assert torch.equal(own[key], pretrained[f'backbone.{key}']), (name, key)
        assert torch.allclose(own['pos_embed'],
                              resize_pos_embed(pretrained['backbone.pos_embed'], (4, 4), (8, 8)))
        assert all(not v.any() for k, v in own.items() if 'rel_pos' in k)
