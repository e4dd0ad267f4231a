"""The tools as a newcomer meets them: ``--help`` answers at once (no torch import), a user's
mistake is one line naming what is missing and what to do (exit status 2; ``--debug`` shows the
traceback), the shell tools answer ``--help``, ``--amp`` on every demo config, a config variable
in ``--cfg-options``, a wrong kind of checkpoint. (``--tensorboard``: the getting-started chain test.)"""
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from conftest import run_command, tool_in_process
from conftest import tool as tool_module

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
DEMO = osp.join(ROOT, 'configs', 'demo')
ENV = dict(os.environ, OMP_NUM_THREADS='1')
PY_TOOLS = ['train.py', 'test.py', 'generate.py', 'fid_is.py', 'convert_checkpoint.py',
            'verify_reference.py', 'make_demo_data.py', 'run_toy_pipeline.py', 'benchmark.py',
            'infer.py', 'demo/app.py']
# a user's mistake for each tool (arguments, run in tmp_path): one line, or with --debug a traceback
MISTAKES = {
    'train.py': (['configs/demo/nope.py'], "config file 'configs/demo/nope.py' not found"),
    'test.py': (['configs/demo/nope.py', 'x.pth'], "config file 'configs/demo/nope.py' not found"),
    'generate.py': (['configs/demo/nope.py', 'x.pth', '--out-dir', 'o'],
                    "config file 'configs/demo/nope.py' not found"),
    'fid_is.py': (['gen', '--ref-dir', 'ref', '--inception-weights', 'w.pth'],
                  "--inception-weights file 'w.pth' not found"),
    'convert_checkpoint.py': (['src.pth', 'dst.pth'], "SRC checkpoint 'src.pth' not found"),
    'verify_reference.py': (['nowhere'], "reference folder 'nowhere' not found"),
    'make_demo_data.py': (['a_file'], "OUT 'a_file' is a file"),
    'run_toy_pipeline.py': (['--device', 'cuda'], '--device cuda: this machine has no CUDA device'),
    'benchmark.py': (['--device', 'cuda'], '--device cuda: this machine has no CUDA device'),
    'infer.py': (['nope.jpg', 'configs/demo/nope.py'], "IMAGE_OR_FOLDER 'nope.jpg' not found"),
    'demo/app.py': (['configs/demo/nope.py', 'x.pth'], "config file 'configs/demo/nope.py' not found"),
}


def tool(name, *args, cwd=ROOT):
    return run_command(['python', osp.join(TOOLS, name), *map(str, args)], cwd=cwd, env=ENV,
                       check=False, what=f'tools/{name}')


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


def tool_error(name, *args, cwd=ROOT):
    """The one line ``tools/NAME`` prints for a user's mistake (what ``cli.run_tool`` prints after
    ``NAME: error: ``), from its ``main`` run in this process: for the mistakes found after the
    heavy imports, which a subprocess would pay seconds for (how the line is printed: the
    subprocess checks with :func:`assert_one_line_error`)."""
    import importlib

    from cli import is_user_mistake
    module = importlib.import_module(name[:-3])
    here = os.getcwd()
    os.chdir(cwd)
    try:
        module.main([str(a) for a in args])
    except Exception as e:  # noqa: B902 (what the tool's run_tool would catch)
        assert is_user_mistake(e), repr(e)
        return ' '.join(str(e).split())
    finally:
        os.chdir(here)
    pytest.fail(f'tools/{name} {args} did not stop with a user mistake')


def assert_fragments(line, *fragments, absent=()):
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
    proc = run_command(['python', '-c', code, osp.join(TOOLS, name)], env=ENV, check=False,
                       what=f'tools/{name} --help')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage:' in proc.stdout
    assert 'TORCH_IMPORTED False False' in proc.stdout


@pytest.mark.parametrize('name, usage', [('dist_train.sh', 'CONFIG NUM_PROCS'),
                                         ('dist_test.sh', 'CONFIG CHECKPOINT NUM_PROCS'),
                                         ('slurm_train.sh', 'PARTITION JOB_NAME CONFIG WORK_DIR'),
                                         ('install.sh', 'bash tools/install.sh')])
def test_shell_tool_help(name, usage):
    for flag in ('--help', '-h'):
        proc = run_command(['bash', osp.join(TOOLS, name), flag], check=False,
                           env=dict(ENV, PYTHON='/nonexistent/python'))
        assert proc.returncode == 0, proc.stderr
        assert usage in proc.stdout
        assert '[addp-mm install]' not in proc.stdout + proc.stderr  # the installer did not start
    if name != 'install.sh':  # too few arguments: the usage on stderr, exit 2
        proc = run_command(['bash', osp.join(TOOLS, name)], check=False)
        assert proc.returncode == 2 and usage in proc.stderr and 'unbound' not in proc.stderr


# ------------------------------------------------------------------ one-line errors
@pytest.mark.parametrize('name', PY_TOOLS)
def test_every_tool_says_a_mistake_in_one_line_and_debug_shows_the_traceback(name, tmp_path):
    args, fragment = MISTAKES[name]
    (tmp_path / 'a_file').write_text('')
    if 'cuda' in args and torch.cuda.is_available():
        pytest.skip('this machine has a CUDA device: --device cuda is no mistake here')
    assert_one_line_error(tool(name, *args, cwd=tmp_path), osp.basename(name), fragment)
    proc = tool(name, *args, '--debug', cwd=tmp_path)
    assert proc.returncode == 1 and 'Traceback' in proc.stderr and fragment in proc.stderr



def test_missing_config_is_one_line_and_debug_shows_traceback(tmp_path):
    for name in ('train.py', 'test.py', 'generate.py'):
        args = ['configs/demo/nope.py'] + ([] if name == 'train.py' else ['x.pth'])
        args += ['--out-dir', 'o'] if name == 'generate.py' else []
        assert_one_line_error(tool(name, *args, cwd=tmp_path), name,
                              "config file 'configs/demo/nope.py' not found", str(tmp_path),
                              'Give the path of a config')
    proc = tool('train.py', 'configs/demo/nope.py', '--debug', cwd=tmp_path)
    assert proc.returncode == 1 and 'Traceback' in proc.stderr and 'MissingFileError' in proc.stderr


def test_missing_own_checkpoint_gets_no_release_hint(tmp_path):
    config = osp.join(DEMO, 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py')
    line = assert_one_line_error(
        tool('test.py', config, 'work_dirs/mine/epoch_8.pth', cwd=tmp_path), 'test.py',
        "checkpoint 'work_dirs/mine/epoch_8.pth' not found", 'work_dirs/<config name>/epoch_N.pth',
        absent=('github', 'release file'))
    assert line.count('\n') == 0
    assert_one_line_error(
        tool('generate.py', osp.join(ROOT, 'configs/pretrain/addp_vit-demo-p16_1xb8-300iter_demo-64px.py'),
             'work_dirs/addp_vit-demo-p16_1xb8-300iter_demo-64px/iter_30.pth', '--out-dir', 'o', cwd=tmp_path),
        'generate.py', "checkpoint 'work_dirs/addp_vit-demo-p16_1xb8-300iter_demo-64px/iter_30.pth' not found",
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


def test_missing_release_file_names_the_release(tmp_path):
    cfg = write_tiny_config(
        tmp_path, init=", init_cfg=dict(type='Pretrained', checkpoint='checkpoints/addp-vit-base-16.pth')")
    assert_fragments(tool_error('train.py', cfg, cwd=tmp_path),
                     "model.backbone.init_cfg.checkpoint 'checkpoints/addp-vit-base-16.pth' "
                     'not found (looked in', 'the ADDP release (github.com/ChangyaoTian/ADDP)',
                     'docs/user_guides/weights.md')
    # a mistyped path to one's own file: just "not found"
    assert_fragments(tool_error('train.py', cfg, '--pretrained', 'work_dirs/x/backbone.pth', cwd=tmp_path),
                     "--pretrained checkpoint 'work_dirs/x/backbone.pth' not found",
                     'backbone.pth at its end', absent=('github', 'release file'))


@pytest.mark.slow
def test_missing_data_folder_and_annotation_file(tmp_path):
    config = osp.join(DEMO, 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py')
    # through the tool once: one line after the heavy imports' warnings
    assert_one_line_error(tool('train.py', config, cwd=tmp_path), 'train.py',
                          "train_dataloader.dataset.data_root: folder 'data/demo/coco/' not "
                          'found', 'python tools/make_demo_data.py data/demo',
                          '--cfg-options train_dataloader.dataset.data_root=PATH')
    os.makedirs(tmp_path / 'data/demo/coco/train2017')
    assert_fragments(tool_error('train.py', config, cwd=tmp_path),
                     "train_dataloader.dataset.ann_file: file "
                     "'data/demo/coco/annotations/instances_train2017.json' not found")
    # a real dataset's folder: the data page, not the demo generator
    cfg = write_tiny_config(tmp_path, data='data/imagenet/train')
    assert_fragments(tool_error('train.py', cfg, cwd=tmp_path),
                     "folder 'data/imagenet/train' not found", 'docs/data_preparation.md',
                     absent=('make_demo_data', ))


# ------------------------------------------------------------------ AMP on a CPU, TensorBoard
def test_amp_on_cpu_one_line_or_native_bf16_fallback(monkeypatch):
    from mmengine.config import Config

    from addp_mm.engine import preflight as launch
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
    # the mmdet paste-in block (AmpOptimWrapper) on a CPU: refused, whatever the CPU
    with pytest.raises(launch.UsageError, match='mmdet detector needs a GPU.*nms'):
        launch.check_amp(Config(dict(default_scope='mmdet', optim_wrapper=dict(amp))))


# each demo config (and the demo pretraining) for one epoch / two iterations of batch 2
AMP_RUNS = {
    'demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=9'],
    'demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py': ['train_cfg.max_iters=2',
                                                       'train_cfg.val_interval=9'],
    'demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py': ['train_cfg.max_epochs=1', 'train_cfg.val_interval=9'],
    'pretrain/addp_vit-demo-p16_1xb8-300iter_demo-64px.py': ['train_cfg.max_iters=2', 'train_dataloader.num_workers=0',
                                       'train_dataloader.persistent_workers=False'],
}


@pytest.mark.slow
@pytest.mark.parametrize('config', sorted(AMP_RUNS))
def test_amp_on_every_demo_config_trains_or_is_one_line(config, demo_cwd):
    """``tools/train.py CONFIG --amp``: either it trains (finite losses, and on a CPU it says it
    runs bf16 autocast, which only a CPU with native bf16 may do) or it stops with the one-line
    error and the fix. On a CPU the detector must stop: mmcv's CPU nms / RoIAlign take float32
    only (they crashed with a traceback inside nms before)."""
    import math
    import re

    from addp_mm.engine.preflight import native_cpu_autocast
    work = demo_cwd / ('amp_' + osp.basename(config)[:-3])
    args = ('train.py', osp.join(ROOT, 'configs', config), '--amp', '--work-dir', work,
            '--cfg-options', 'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1',
            *AMP_RUNS[config])
    cpu = not torch.cuda.is_available()
    refused = cpu and ('mask-rcnn' in config or 'pretrain' in config or not native_cpu_autocast())
    if refused:  # found before anything is built: checked in this process
        line = assert_fragments(tool_error(*args, cwd=demo_cwd), 'needs a GPU', 'without --amp')
        if 'mask-rcnn' in config:
            assert 'nms' in line and 'optim_wrapper.type=OptimWrapper' in line
        return
    if 'upernet' in config:  # in this process (the command line: the other configs' runs)
        import glob
        import json

        from mmengine.config import Config
        tool_in_process('train', args[1:], demo_cwd)
        scalars, = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
        losses = [json.loads(line)['loss'] for line in open(scalars) if '"loss"' in line]
        used = Config.fromfile(next(iter(glob.glob(str(work / '*.py'))))).optim_wrapper.type
        assert used == ('CPUAutocastOptimWrapper' if cpu else 'AmpOptimWrapper'), used
    else:
        proc = tool(*args, cwd=demo_cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        losses = [float(x) for x in re.findall(r'\bloss: (\S+)', proc.stdout)]
        if cpu:
            assert 'runs with CPU bf16 autocast' in proc.stdout + proc.stderr
    assert losses and all(math.isfinite(x) for x in losses), losses


def test_cpu_autocast_optim_wrapper_runs_forward_in_bf16():
    from addp_mm.engine.optimizers import CPUAutocastOptimWrapper
    model = torch.nn.Linear(4, 2)
    wrapper = CPUAutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert model.weight.dtype == torch.float32 and model.weight.grad is None


# ------------------------------------------------------------------ --cfg-options of a variable
def test_cfg_options_of_a_config_variable_is_honoured_or_refused(tmp_path):
    """mmengine substitutes a config's top-level variables when it reads the file: a path
    variable (``data_root``) given with ``--cfg-options`` reaches every key built from it (it
    was silently ignored before); any other variable is a one-line error naming the keys to
    set."""
    from addp_mm.engine.config import load_config
    from addp_mm.errors import UsageError
    config = osp.join(DEMO, 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py')
    cfg = load_config(config, {'data_root': '/elsewhere/coco'})
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/elsewhere/coco', loader
    assert cfg.val_evaluator.ann_file == '/elsewhere/coco/annotations/instances_val2017.json'
    assert cfg.test_evaluator.ann_file == cfg.val_evaluator.ann_file
    assert cfg.data_root == '/elsewhere/coco'
    untouched = load_config(config)
    assert untouched.val_evaluator.ann_file == 'data/demo/coco/annotations/instances_val2017.json'
    with pytest.raises(UsageError, match=r'max_epochs \(8\) is a variable.*changes nothing'):
        load_config(config, {'max_epochs': 2})
    with pytest.raises(UsageError, match=r'train_pipeline .*--cfg-options '
                                         r'train_dataloader\.dataset\.pipeline=\.\.\.'):
        load_config(config, {'train_pipeline': []})
    # the keys mmengine's runner reads are set as they always were
    assert load_config(config, {'train_cfg.max_epochs': 2}).train_cfg.max_epochs == 2
    # through the tool: the run looks where it was told (and says so)
    assert_fragments(tool_error('train.py', config, '--cfg-options', 'data_root=/nonexistent/',
                                cwd=tmp_path), "folder '/nonexistent/' not found")


@pytest.mark.parametrize('config, option, fragments', [
    # a constructor's argument misspelt (the class's signature, **kwargs followed to its bases)
    ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py', 'model.backbone.drop_path_rat=0.1',
     ("ADDPViT (model.backbone) takes no argument 'drop_path_rat'", 'did you mean drop_path_rate')),
    ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py', 'train_cfg.max_epoch=3',
     ("EpochBasedTrainLoop (train_cfg) takes no argument 'max_epoch'", 'max_epochs')),
    ('upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py', 'optim_wrapper.optimizer.lrr=0.1',
     ("AdamW (optim_wrapper.optimizer) takes no argument 'lrr'", 'did you mean lr')),
    ('vit-demo-p16_1xb32-30e_demo-in1k-128px.py', 'default_hooks.checkpoint.max_keep_ckpt=1',
     ("CheckpointHook (default_hooks.checkpoint) takes no argument 'max_keep_ckpt'",
      'max_keep_ckpts')),
    ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py',
     'train_dataloader.dataset.pipeline.2.scal=(64,64)',
     ("(train_dataloader.dataset.pipeline.2) takes no argument 'scal'", 'did you mean scale')),
    # a free-form dict (no type): a near miss of a key it has
    ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py', 'model.test_cfg.rcnn.score_th=0.3',
     ("model.test_cfg.rcnn has no key 'score_th'", 'did you mean score_thr')),
    ('vit-demo-p16_1xb32-30e_demo-in1k-128px.py', 'train_dataloader.num_worker=0',
     ("train_dataloader has no key 'num_worker'", 'did you mean num_workers')),
    # the top level, a type, a key inside None
    ('vit-demo-p16_1xb32-30e_demo-in1k-128px.py', 'work_dirr=x',
     ("'work_dirr' is not a key mmengine's runner or the tools read", 'did you mean work_dir')),
    ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py', 'model.backbone.type=ADDPVit',
     ("'ADDPVit' is not registered in mmdet's model registry", 'did you mean ADDPViT')),
    ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py', 'model.backbone.init_cfg.checkpoint=x.pth',
     ('model.backbone.init_cfg is None in the config', 'model.backbone.init_cfg._delete_=True')),
])
def test_a_cfg_options_key_nothing_reads_is_refused_naming_the_closest(config, option, fragments):
    """A misspelt --cfg-options key was merged silently (mmengine builds a class with a keyword
    it does not take: a traceback after the model was half built, or no error at all in a
    free-form dict): one line naming the key and the closest valid ones, before anything is
    built."""
    from addp_mm.engine.config import cfg_options_dict, load_config
    from addp_mm.errors import UsageError
    with pytest.raises(UsageError) as info:
        load_config(osp.join(DEMO, config), cfg_options_dict([option]))
    assert_fragments(str(info.value), *fragments)


def test_cfg_options_keys_that_are_read_pass():
    """What is valid is merged as before: existing keys, arguments a class takes (also through
    **kwargs to its bases), new keys of free-form dicts, a dict replaced whole, a list entry."""
    from addp_mm.engine.config import cfg_options_dict, load_config
    cfg = load_config(osp.join(DEMO, 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'),
                      cfg_options_dict([
                          'model.backbone.drop_path_rate=0.1',  # a new argument of ADDPViT
                          'model.roi_head.bbox_head.loss_cls.loss_weight=2.0',  # through **kwargs
                          'model.test_cfg.rcnn.debug=True',  # a new key of a free-form dict
                          'param_scheduler.1.milestones=[5,7]', 'randomness.seed=1',
                          'model.backbone.init_cfg._delete_=True',
                          'model.backbone.init_cfg.type=Pretrained',
                          'model.backbone.init_cfg.checkpoint=x.pth',
                          'optim_wrapper.paramwise_cfg.norm_decay_mult=0.0']))
    assert cfg.model.backbone.drop_path_rate == 0.1 and cfg.model.test_cfg.rcnn.debug is True
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='x.pth')
    assert cfg.param_scheduler[1].milestones == [5, 7]


def test_a_misspelt_cfg_option_stops_train_py_before_anything_is_built(tmp_path):
    """Through the tool: one line, exit 2, no work dir made (nothing was built)."""
    line = tool_error('train.py', osp.join(DEMO, 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'),
                      '--cfg-options', 'model.backbone.drop_path_rat=0.1', cwd=tmp_path)
    assert_fragments(line, 'did you mean drop_path_rate')
    assert not (tmp_path / 'work_dirs').exists()


# ------------------------------------------------------------------ a wrong kind of checkpoint
def _saved(path, model):
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, path)
    return str(path)


def test_every_wrong_kind_of_file_gets_one_line_saying_which_to_give(tmp_path, caplog):
    """tools/generate.py with a detector's, a segmenter's, a classifier's or an encoder-only file:
    one line saying what the file is and which to give, and no warning about a random tokenizer
    before the file is accepted (a detector's file was a RuntimeError traceback)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS

    from addp_mm.apis import build_generation_model
    from addp_mm.checkpoint import (CheckpointKindError, checkpoint_kind,
                                                 encoder_state_dict)
    from cli import is_user_mistake
    from test_configs import _build as build_model_and_optimizer
    from test_generation import TINY_MODEL
    files = {}
    for name in ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py', 'upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py',
                 'vit-demo-p16_1xb32-30e_demo-in1k-128px.py'):
        model, _ = build_model_and_optimizer(Config.fromfile(osp.join(DEMO, name)))
        files[name] = _saved(tmp_path / f'{name}.pth', model)
    addp = MODELS.build(TINY_MODEL)
    files['iter_4.pth'] = _saved(tmp_path / 'iter_4.pth', addp)
    encoder = encoder_state_dict(addp.backbone.state_dict())
    torch.save({'state_dict': encoder}, tmp_path / 'backbone.pth')
    files['backbone.pth'] = str(tmp_path / 'backbone.pth')
    kinds = {n: checkpoint_kind(torch.load(f, weights_only=True)['state_dict']) for n, f in files.items()}
    assert kinds == {'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py': 'detector',
                     'upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py': 'segmenter',
                     'vit-demo-p16_1xb32-30e_demo-in1k-128px.py': 'classifier', 'iter_4.pth': 'addp',
                     'backbone.pth': 'encoder'}
    config = Config(dict(model=TINY_MODEL))
    texts = {'detector': 'an mmdet detector checkpoint', 'segmenter': 'an mmseg segmenter checkpoint',
             'classifier': 'a classifier checkpoint', 'encoder': 'a backbone-only file'}
    for name, path in files.items():
        if kinds[name] == 'addp':
            continue
        caplog.clear()
        with pytest.raises(CheckpointKindError) as err:
            build_generation_model(config, path)
        message = str(err.value)
        assert is_user_mistake(err.value)
        assert message.startswith(f'{path}: this is {texts[kinds[name]]}')
        assert 'generation needs the full checkpoint, e.g. iter_300.pth' in message
        assert 'RANDOMLY INITIALISED' not in caplog.text  # nothing said about other parts yet
    model, _ = build_generation_model(config, files['iter_4.pth'])  # the right file is accepted
    assert torch.equal(model.neck.token_emb.weight, addp.neck.token_emb.weight)
    # the same through the tool
    caplog.clear()
    assert_fragments(tool_error('generate.py', osp.join(ROOT, 'configs/pretrain/addp_vit-demo-p16_1xb8-300iter_demo-64px.py'),
                                files['mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'], '--out-dir',
                                tmp_path / 'o', cwd=tmp_path),
                     'this is an mmdet detector checkpoint', 'iter_N.pth')
    assert 'RANDOMLY' not in caplog.text


# ------------------------------------------------------------------ test.py --score-thr
def test_score_thr_sets_which_detections_are_drawn(tmp_path):
    """``tools/test.py --score-thr T --show-dir DIR`` on a detector config: the configured drawing
    hook draws the predictions scoring at least T (two boxes of scores 0.2 and 0.9: thresholds
    0.1, 0.5 and 0.95 give three different drawings, 0.95 the one with no box)."""
    import numpy as np
    from mmdet.registry import HOOKS as DET_HOOKS
    from mmdet.registry import VISUALIZERS
    from mmdet.structures import DetDataSample
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData
    from PIL import Image

    from addp_mm.engine.config import load_config
    from addp_mm.engine.test_outputs import setup_test_outputs
    from test_configs import _register_toolbox
    _register_toolbox('mmdet')
    image = tmp_path / 'img.png'
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(image)
    sample = DetDataSample(metainfo=dict(img_path=str(image), img_shape=(128, 128),
                                         ori_shape=(128, 128)))
    sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[10., 10., 60., 60.], [70., 70., 120., 120.]]),
        scores=torch.tensor([0.2, 0.9]), labels=torch.tensor([0, 1]))
    drawn = {}
    for thr in (0.1, 0.5, 0.95):
        cfg = load_config(osp.join(DEMO, 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'))
        out = tmp_path / f'vis_{thr}'
        setup_test_outputs(cfg, None, str(out), score_thr=thr, draw_size=0)
        with DefaultScope.overwrite_default_scope('mmdet'):
            VISUALIZERS.build(dict(cfg.visualizer, name=f'score_thr_test_{thr}'))
            hook = DET_HOOKS.build(cfg.default_hooks.visualization)
        runner = SimpleNamespace(work_dir=str(tmp_path), timestamp='t')
        hook.after_test_iter(runner, 0, {}, [sample])
        drawn[thr] = np.asarray(Image.open(out / 'img.png'))
    assert hook.score_thr == 0.95
    assert not np.array_equal(drawn[0.1], drawn[0.5]) and not np.array_equal(drawn[0.5], drawn[0.95])
    width = drawn[0.95].shape[1] // 2  # ground truth | prediction
    assert np.array_equal(drawn[0.95][:, width:], drawn[0.95][:, :width])  # no box, no gt either


def test_an_old_config_name_still_works_for_a_release(tmp_path, capsys):
    """Every renamed config: the old path resolves to the new file (with a note on stderr), the
    work dir keeps the name given; the tools run it (here: test.py gets as far as the checkpoint)."""
    cli = tool_module('cli')
    from addp_mm.renamed_configs import RENAMED_CONFIGS
    assert len(RENAMED_CONFIGS) == 20
    for old, new in RENAMED_CONFIGS.items():
        assert not osp.exists(osp.join(ROOT, old)) and osp.isfile(osp.join(ROOT, new)), old
        assert cli.require_config(osp.join(ROOT, old)) == osp.join(ROOT, new)
    assert f'is now named {osp.join(ROOT, new)}' in capsys.readouterr().err
    proc = tool('test.py', 'configs/demo/mask-rcnn_addp-vit-demo_demo-coco.py', 'missing.pth')
    assert 'configs/demo/mask-rcnn_addp-vit-demo_demo-coco.py is now named ' \
           'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py' in proc.stderr
    assert_one_line_error(proc, 'test.py', "checkpoint 'missing.pth' not found")
    from addp_mm.engine.config import set_work_dir
    from mmengine.config import Config
    cfg = Config(dict(model=dict()))
    set_work_dir(cfg, None, 'configs/demo/mask-rcnn_addp-vit-demo_demo-coco.py')
    assert cfg.work_dir == osp.join('work_dirs', 'mask-rcnn_addp-vit-demo_demo-coco')
    with pytest.raises(FileNotFoundError, match='configs/demo/nope.py'):
        cli.require_config('configs/demo/nope.py')


def test_cpu_threads_leave_the_busy_cores_to_other_processes(monkeypatch, capsys):
    """Before torch is imported a tool counts the cores other processes keep busy and gives torch
    the rest (at least one), saying so; OMP_NUM_THREADS set by the user, a launcher or the tests
    is kept, and so is a process that has imported torch already."""
    cli = tool_module('cli')
    monkeypatch.setattr(cli.os, 'sched_getaffinity', lambda pid: {0, 1, 2, 3}, raising=False)
    chosen, policy = {}, {}
    for busy in (0.0, 0.5, 0.7, 1.0, 2.2, 3.9, 7.0):
        monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
        monkeypatch.delenv('OMP_WAIT_POLICY', raising=False)
        monkeypatch.setattr(cli, 'busy_cores', lambda busy=busy: busy)
        monkeypatch.delitem(cli.sys.modules, 'torch', raising=False)  # a tool before its imports
        chosen[busy] = cli.choose_cpu_threads()
        assert cli.os.environ['OMP_NUM_THREADS'] == str(chosen[busy])
        policy[busy] = cli.os.environ.get('OMP_WAIT_POLICY')
    assert chosen == {0.0: 4, 0.5: 4, 0.7: 3, 1.0: 3, 2.2: 2, 3.9: 1, 7.0: 1}
    # several threads wait passively (one has no one to wait for); a policy set is kept
    assert policy == {b: 'PASSIVE' if n > 1 else None for b, n in chosen.items()}
    monkeypatch.setenv('OMP_WAIT_POLICY', 'ACTIVE')
    monkeypatch.setattr(cli, 'busy_cores', lambda *a: 0.0)
    monkeypatch.delenv('OMP_NUM_THREADS')
    cli.choose_cpu_threads()
    assert cli.os.environ['OMP_WAIT_POLICY'] == 'ACTIVE'
    assert 'other processes keep 1.0 of the 4 cores busy: using 3 CPU threads' in capsys.readouterr().err
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    assert cli.choose_cpu_threads() is None and cli.os.environ['OMP_NUM_THREADS'] == '2'
    monkeypatch.delenv('OMP_NUM_THREADS')
    monkeypatch.setitem(cli.sys.modules, 'torch', torch)
    assert cli.choose_cpu_threads() is None  # torch imported here: too late to choose
    # the sampler reads /proc/stat: this process sleeping, the rest of the machine counted
    monkeypatch.undo()
    busy = cli.busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= (cli.os.cpu_count() or 1)
