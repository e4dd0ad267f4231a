"""The tools as a newcomer meets them: ``--help`` answers at once (no torch import), a user's
mistake is one line naming what is missing and what to do (exit status 2; ``--debug`` shows the
traceback), the shell tools answer ``--help``, AMP on a CPU, ``--tensorboard``."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
DEMO = osp.join(ROOT, 'configs', 'demo')
ENV = dict(os.environ, OMP_NUM_THREADS='1')
PY_TOOLS = ['train.py', 'test.py', 'generate.py', 'fid_is.py', 'convert_checkpoint.py',
            'verify_reference.py', 'make_demo_data.py', 'run_toy_pipeline.py']


def tool(name, *args, cwd=ROOT):
    return subprocess.run([sys.executable, osp.join(TOOLS, name), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600)


def assert_one_line_error(proc, prog, *fragments, absent=()):
    """Exit status 2, no traceback, and the last stderr line is ``prog: error: ...`` holding every
    fragment (earlier stderr lines may be library warnings, never the error)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f'{prog}: error: '), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    for fragment in absent:
        assert fragment not in line, (fragment, line)
    return line


# ------------------------------------------------------------------ --help
@pytest.mark.parametrize('name', PY_TOOLS)
def test_python_tool_help_imports_no_torch(name):
    code = ('import runpy, sys; sys.argv = [sys.argv[1], "--help"]\n'
            'try:\n    runpy.run_path(sys.argv[0], run_name="__main__")\n'
            'except SystemExit as e:\n    assert e.code in (0, None), e.code\n'
            'print("TORCH_IMPORTED", "torch" in sys.modules, "mmengine" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code, osp.join(TOOLS, name)], capture_output=True,
                          text=True, cwd=ROOT, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage:' in proc.stdout
    assert 'TORCH_IMPORTED False False' in proc.stdout


@pytest.mark.parametrize('name, usage', [('dist_train.sh', 'CONFIG NUM_PROCS'),
                                         ('dist_test.sh', 'CONFIG CHECKPOINT NUM_PROCS'),
                                         ('slurm_train.sh', 'PARTITION JOB_NAME CONFIG WORK_DIR'),
                                         ('install.sh', 'bash tools/install.sh')])
def test_shell_tool_help(name, usage):
    for flag in ('--help', '-h'):
        proc = subprocess.run(['bash', osp.join(TOOLS, name), flag], capture_output=True, text=True,
                              timeout=30, env=dict(ENV, PYTHON='/nonexistent/python'))
        assert proc.returncode == 0, proc.stderr
        assert usage in proc.stdout
        assert '[addp-mm install]' not in proc.stdout + proc.stderr  # the installer did not start
    if name != 'install.sh':  # too few arguments: the usage on stderr, exit 2
        proc = subprocess.run(['bash', osp.join(TOOLS, name)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and usage in proc.stderr and 'unbound' not in proc.stderr


# ------------------------------------------------------------------ one-line errors
def test_missing_config_is_one_line_and_debug_shows_traceback(tmp_path):
    for name in ('train.py', 'test.py', 'generate.py'):
        args = ['configs/demo/nope.py'] + ([] if name == 'train.py' else ['x.pth'])
        args += ['--out-dir', 'o'] if name == 'generate.py' else []
        assert_one_line_error(tool(name, *args, cwd=tmp_path), name,
                              "config file 'configs/demo/nope.py' not found", str(tmp_path),
                              'Give the path of a config')
    proc = tool('train.py', 'configs/demo/nope.py', '--debug', cwd=tmp_path)
    assert proc.returncode == 1 and 'Traceback' in proc.stderr and 'FileNotFoundError' in proc.stderr


def test_missing_own_checkpoint_gets_no_release_hint(tmp_path):
    config = osp.join(DEMO, 'mask-rcnn_addp-vit-demo_demo-coco.py')
    line = assert_one_line_error(
        tool('test.py', config, 'work_dirs/mine/epoch_8.pth', cwd=tmp_path), 'test.py',
        "checkpoint 'work_dirs/mine/epoch_8.pth' not found", 'work_dirs/<config name>/epoch_N.pth',
        absent=('github', 'release file'))
    assert line.count('\n') == 0
    assert_one_line_error(
        tool('generate.py', osp.join(ROOT, 'configs/pretrain/addp_vit-tiny_demo.py'),
             'work_dirs/addp_vit-tiny_demo/iter_30.pth', '--out-dir', 'o', cwd=tmp_path),
        'generate.py', "checkpoint 'work_dirs/addp_vit-tiny_demo/iter_30.pth' not found",
        absent=('github', 'release file'))
    assert_one_line_error(tool('convert_checkpoint.py', 'addp-vit-base-16.pth', 'out.pth', cwd=tmp_path),
                          'convert_checkpoint.py', "SRC checkpoint 'addp-vit-base-16.pth' not found",
                          'the ADDP release (github.com/ChangyaoTian/ADDP)')


TINY_CONFIG = '''
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=2, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    backbone=dict(type='ADDPViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64), img_size=32, patch_size=8, out_type='avg_featmap',
                  final_norm=False{init}),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=32,
              loss=dict(type='CrossEntropyLoss')))
train_dataloader = dict(
    batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root='{data}',
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
train_cfg = dict(by_epoch=True, max_epochs=1)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
'''


def write_tiny_config(tmp_path, data='data/tiny', init=''):
    path = tmp_path / 'tiny.py'
    path.write_text(TINY_CONFIG.format(data=data, init=init))
    return path


def make_class_folders(root):
    import numpy as np
    from PIL import Image
    for c in range(2):
        os.makedirs(root / f'class{c}', exist_ok=True)
        for i in range(4):
            img = np.full((32, 32, 3), 60 + 120 * c, np.uint8)
            Image.fromarray(img).save(root / f'class{c}' / f'{i}.png')


@pytest.mark.slow
def test_missing_release_file_names_the_release(tmp_path):
    cfg = write_tiny_config(
        tmp_path, init=", init_cfg=dict(type='Pretrained', checkpoint='checkpoints/addp-vit-base-16.pth')")
    assert_one_line_error(tool('train.py', cfg, cwd=tmp_path), 'train.py',
                          "model.backbone.init_cfg.checkpoint = 'checkpoints/addp-vit-base-16.pth': "
                          'file not found', 'the ADDP release (github.com/ChangyaoTian/ADDP)',
                          'README "Weights"')
    # a mistyped path to one's own file: just "not found"
    assert_one_line_error(tool('train.py', cfg, '--pretrained', 'work_dirs/x/backbone.pth', cwd=tmp_path),
                          'train.py', "--pretrained checkpoint 'work_dirs/x/backbone.pth' not found",
                          'backbone.pth at its end', absent=('github', 'release file'))


@pytest.mark.slow
def test_missing_data_folder_and_annotation_file(tmp_path):
    config = osp.join(DEMO, 'mask-rcnn_addp-vit-demo_demo-coco.py')
    assert_one_line_error(tool('train.py', config, cwd=tmp_path), 'train.py',
                          "train_dataloader.dataset.dataset.data_root: folder 'data/demo/coco/' not "
                          'found', 'python tools/make_demo_data.py data/demo',
                          '--cfg-options train_dataloader.dataset.dataset.data_root=PATH')
    os.makedirs(tmp_path / 'data/demo/coco/train2017')
    assert_one_line_error(tool('train.py', config, cwd=tmp_path), 'train.py',
                          "train_dataloader.dataset.dataset.ann_file: file "
                          "'data/demo/coco/annotations/instances_train2017.json' not found")
    # a real dataset's folder: the README section, not the demo generator
    cfg = write_tiny_config(tmp_path, data='data/imagenet/train')
    assert_one_line_error(tool('train.py', cfg, cwd=tmp_path), 'train.py',
                          "folder 'data/imagenet/train' not found", 'README "Preparing data"',
                          absent=('make_demo_data', ))


# ------------------------------------------------------------------ AMP on a CPU, TensorBoard
def test_amp_on_cpu_one_line_or_native_bf16_fallback(monkeypatch):
    from mmengine.config import Config

    from addp_mm.engine import launch
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    amp = dict(type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict(type='SGD', lr=0.1))
    monkeypatch.setattr(launch, 'native_cpu_autocast', lambda dtype='bf16': False)
    with pytest.raises(launch.UsageError, match='needs a GPU or a CPU with native bf16.*'
                       'optim_wrapper.type=OptimWrapper'):
        launch.check_amp(Config(dict(optim_wrapper=dict(amp))))
    # the suggested fix works: the AMP-only keys left in the config are dropped
    cfg = Config(dict(optim_wrapper=dict(amp, type='OptimWrapper')))
    launch.check_amp(cfg)
    assert 'loss_scale' not in cfg.optim_wrapper
    monkeypatch.setattr(launch, 'native_cpu_autocast', lambda dtype='bf16': True)
    cfg = Config(dict(optim_wrapper=dict(amp)))
    launch.check_amp(cfg)
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper' and 'loss_scale' not in cfg.optim_wrapper


def test_cpu_autocast_optim_wrapper_runs_forward_in_bf16():
    from addp_mm.engine.optimizers import CPUAutocastOptimWrapper
    model = torch.nn.Linear(4, 2)
    wrapper = CPUAutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype == torch.float32 and model.weight.grad is None


@pytest.mark.slow
def test_train_tensorboard_and_amp_flags(tmp_path):
    make_class_folders(tmp_path / 'data' / 'tiny')
    cfg = write_tiny_config(tmp_path)
    args = ['train.py', cfg, '--work-dir', tmp_path / 'work', '--tensorboard']
    from addp_mm.engine.launch import native_cpu_autocast
    if not torch.cuda.is_available() and not native_cpu_autocast('bf16'):
        assert_one_line_error(tool(*args, '--amp', cwd=tmp_path), 'train.py', 'needs a GPU')
    else:
        args.append('--amp')
    proc = tool(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [f for _, _, files in os.walk(tmp_path / 'work') for f in files if 'tfevents' in f]
    assert events, 'no TensorBoard event file'
    assert 'System environment' not in proc.stdout  # the dump is in the log file only
