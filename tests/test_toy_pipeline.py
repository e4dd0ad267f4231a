"""The toy chain end to end (``tools/run_toy_pipeline.py --quick``) on digits written here: every
file handoff (tokenizer -> token predictor -> ADDP -> generation -> evaluation), every row of the
results table, the directions a working chain shows even in this short run (60 / 150 / 12
iterations; measured with one thread: tokenizer MSE 0.0098 vs 0.058 for the mean image,
reconstructions' toy FID 0.00044 vs 0.0017 for random tokens, masked-token accuracy 20.7% vs 6.6%
for the most frequent code, every training loss lower at its end), and ``--reuse``."""
import json
import math
import os
import os.path as osp
import sys

import pytest
from conftest import run_command, tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.parametrize('iters', [4, 8, 12, 60, 2000])
def test_short_schedules_warm_up_to_the_configured_lr(iters):
    """The schedule of an ``iters``-iteration step as the pipeline shortens a config: the linear
    warm-up reaches the config's lr, then the cosine decays it (an 8-iteration run used to stay
    at 1e-3 of it: mmengine's LinearLR over one iteration never leaves its start factor)."""
    import torch
    from mmengine.registry import PARAM_SCHEDULERS

    from addp_mm.engine.config import cfg_options_dict, load_config
    pipeline = tool('run_toy_pipeline')
    cfg = load_config(pipeline.CONFIGS['addp'],
                      cfg_options_dict(pipeline.schedule_options(iters, warmup=20)))
    lr = cfg.optim_wrapper.optimizer.lr
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(cfg.train_cfg.max_iters):  # ParamSchedulerHook: a step after each iteration
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for s in schedulers:
            s.step()
    assert lrs[0] == pytest.approx(lr * cfg.param_scheduler[0].start_factor)
    assert max(lrs) == pytest.approx(lr)
    assert lrs[-1] < lr  # decayed


@pytest.mark.slow
def test_toy_pipeline_quick(tmp_path):
    data = tmp_path / 'data'
    env = dict(os.environ, PYTHONPATH=ROOT)
    run_command(['python', 'tools/make_demo_data.py', str(data), '--only', 'digits'], env=env)
    work = tmp_path / 'toy'
    cmd = [sys.executable, 'tools/run_toy_pipeline.py', '--quick', '--device', 'cpu', '--data-root',
           str(data / 'digits'), '--work-dir', str(work)]
    proc = run_command(cmd, env=env, what='tools/run_toy_pipeline.py --quick')
    # each step's output, read by the next one
    for f in ('tokenizer/tokenizer.pth', 'predictor/token_predictor.pth', 'addp/iter_12.pth',
              'addp/backbone.pth', 'samples_grid.png', 'reconstructions.png', 'results.md',
              'results.json'):
        assert (work / f).is_file(), f
    assert len(list((work / 'samples').glob('*.png'))) == 8
    # the config each training run used (dumped by mmengine): the previous step's file where the
    # model reads it, and the data root carried into the dataset
    from mmengine.config import Config
    tok = str(work / 'tokenizer' / 'tokenizer.pth')
    tp = str(work / 'predictor' / 'token_predictor.pth')
    cfg = Config.fromfile(str(work / 'predictor' / 'mage-token-trainer_mage-toy_1xb32-2k_digits-32px.py'))
    assert cfg.model.tokenizer.checkpoint == tok
    assert cfg.train_dataloader.dataset.data_root == str(data / 'digits')
    cfg = Config.fromfile(str(work / 'addp' / 'addp_vit-demo-p4_1xb32-2k_digits-32px.py'))
    assert cfg.model.target_generator.tokenizer.checkpoint == tok
    assert cfg.model.target_generator.token_predictor.checkpoint == tp
    assert cfg.train_dataloader.dataset.data_root == str(data / 'digits')
    results = json.loads((work / 'results.json').read_text())
    assert results['files']['backbone'] == str(work / 'addp' / 'backbone.pth')
    table = (work / 'results.md').read_text()
    from run_toy_pipeline import DOWNSTREAM_ROWS, ROWS
    for name in [r[0] for r in ROWS] + [r[0] for r in DOWNSTREAM_ROWS]:
        assert f'| {name} |' in table, name
    assert '| total |' in table
    assert table in proc.stdout  # printed at the end
    # the downstream runs start from the exported encoder: the linear probe trains only the
    # linear head (the whole encoder, fc_norm included, stays the file's; the BN has no affine
    # parameters), the fine-tune reads the 10% list
    import torch
    backbone = torch.load(work / 'addp' / 'backbone.pth', weights_only=True)['state_dict']
    probe = torch.load(work / 'downstream' / 'linear_addp_seed0' / 'epoch_1.pth', weights_only=True)
    for key, value in backbone.items():  # named as in a whole model: backbone.*
        assert torch.equal(probe['state_dict'][key], value), key
    moments = [s['exp_avg'] for s in probe['optimizer']['state'].values()]
    assert len(moments) == 2 and all(m.abs().sum() > 0 for m in moments)  # head.fc
    tuned = Config.fromfile(str(work / 'downstream' / 'finetune10_addp_seed0' /
                                'vit-demo-p4_1xb32-60e_digits-10pct-32px.py'))
    assert tuned.train_dataloader.dataset.ann_file == 'meta/train_10pct.txt'
    assert tuned.train_dataloader.dataset.data_root == str(data / 'digits')
    # what a working chain shows after 60 / 150 / 12 iterations
    tok, tp, addp, fid = (results[k] for k in ('tokenizer', 'token_predictor', 'addp', 'fid'))
    assert tok['val_mse'] < 0.5 * tok['mean_image_mse'], tok
    assert fid['reconstructions_floor'] < 0.5 * fid['random_tokens_ceiling'], fid
    assert tp['val_masked_acc_at_0_5'] > 1.5 * tp['most_frequent_code_acc'], tp
    for part, first, last in ((tok, 'training_first_loss', 'training_last_loss'),
                              (tp, 'training_first_loss', 'training_last_loss'),
                              (addp, 'first_loss', 'last_loss')):
        assert math.isfinite(part[first]) and math.isfinite(part[last]), part
        assert part[last] < part[first], part
    # --reuse: nothing trained again, the same evaluation of the same files
    again = run_command(cmd + ['--reuse'], env=env, what='tools/run_toy_pipeline.py --reuse')
    for step in ('1 tokenizer training', '2 token predictor training', '3 ADDP pretraining',
                 '4 generation'):
        assert f'{step}: reusing' in again.stdout, step
    assert 'earlier run, reused' in again.stdout  # the downstream runs
    reused = json.loads((work / 'results.json').read_text())
    for key in ('tokenizer', 'token_predictor', 'downstream'):
        assert reused[key] == results[key], key
