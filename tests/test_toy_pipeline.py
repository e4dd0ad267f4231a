"""The toy chain end to end (``tools/run_toy_pipeline.py --quick``) on digits written here: every
file handoff (tokenizer -> token predictor -> ADDP -> generation -> evaluation), every row of the
results table, what a quick run cannot measure said as n/a with its reason (null in
results.json), the directions a working chain shows even in this short run (60 / 200 / 12
iterations at batch 16; measured with one thread: tokenizer MSE 0.0100 vs 0.058 for the mean
image, masked-token accuracy 19.2% vs 6.8% for the most frequent code, every training loss lower
at its end, the digit classifier 89.1% on val, reconstructions' toy FID 0.43 vs 3.40 for random
tokens, the one-epoch linear probe 35.4% where chance is 10%), and ``--reuse``; the short
schedules' warm-up; user mistakes in one line."""
import json
import math
import os
import os.path as osp

import pytest
from conftest import tool, tool_in_process

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


def test_user_mistakes_are_one_line(tmp_path):
    """A --data-root that is not laid out like the digits stops before anything runs; a step's
    user mistake is said in one line naming the step and its log (tools/cli.py prints it)."""
    from addp_mm.errors import UsageError
    pipeline = tool('run_toy_pipeline')
    (tmp_path / 'digits' / 'train').mkdir(parents=True)
    with pytest.raises(UsageError, match=r'--data-root .*digits: no val/, meta/ folder'):
        pipeline.main(['--quick', '--data-root', str(tmp_path / 'digits'), '--work-dir',
                       str(tmp_path / 'work')])
    assert not (tmp_path / 'work').exists()
    steps = pipeline.Pipeline(pipeline.parse_args(['--work-dir', str(tmp_path / 'work')]))
    with pytest.raises(UsageError) as e:
        steps.run('1_tokenizer', ['tools/train.py', str(tmp_path / 'missing.py')])
    log = tmp_path / 'work' / 'logs' / '1_tokenizer.log'
    assert str(e.value).startswith('step 1_tokenizer: ') and str(log) in str(e.value)
    assert 'missing.py' in str(e.value) and '\n' not in str(e.value)
    assert 'Traceback' in log.read_text()  # the whole story stays in the step's log


@pytest.mark.slow
def test_toy_pipeline_quick(tmp_path, monkeypatch, capsys):
    """The pipeline's ``main`` runs in this process (how the tool starts as a command and says a
    mistake: tests/test_tools_ux.py), twice: the quick run, then ``--reuse``."""
    from demo_data import make_digits
    data = tmp_path / 'data'
    make_digits(str(data / 'digits'))
    work = tmp_path / 'toy'
    args = ['--quick', '--device', 'cpu', '--data-root', str(data / 'digits'), '--work-dir',
            str(work), '--edits']
    for name in ('CUDA_VISIBLE_DEVICES', 'CUBLAS_WORKSPACE_CONFIG'):  # main sets them
        if name in os.environ:  # restored as they are after the test
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    tool_in_process('run_toy_pipeline', args, ROOT)
    printed = capsys.readouterr().out
    # each step's output, read by the next one
    for f in ('tokenizer/tokenizer.pth', 'predictor/token_predictor.pth', 'addp/iter_12.pth',
              'addp/backbone.pth', 'samples_grid.png', 'reconstructions.png', 'results.md',
              'results.json', 'digit_classifier.pth'):
        assert (work / f).is_file(), f
    assert len(list((work / 'samples').glob('*.png'))) == 8
    assert len(list((work / 'fid' / 'random_tokens').glob('*.png'))) == 128  # FID_MIN_IMAGES
    # the config each training run used (dumped by mmengine): the previous step's file where the
    # model reads it, the data root carried into the dataset, the quick run's batch
    from mmengine.config import Config
    tok = str(work / 'tokenizer' / 'tokenizer.pth')
    tp = str(work / 'predictor' / 'token_predictor.pth')
    cfg = Config.fromfile(str(work / 'predictor' /
                              'mage-token-trainer_mage-toy_1xb32-2k_digits-32px.py'))
    assert cfg.model.tokenizer.checkpoint == tok
    assert cfg.train_dataloader.dataset.data_root == str(data / 'digits')
    assert cfg.train_dataloader.batch_size == 16 and cfg.train_cfg.max_iters == 200
    cfg = Config.fromfile(str(work / 'addp' / 'addp_vit-demo-p4_1xb32-2k_digits-32px.py'))
    assert cfg.model.target_generator.tokenizer.checkpoint == tok
    assert cfg.model.target_generator.token_predictor.checkpoint == tp
    assert cfg.train_dataloader.dataset.data_root == str(data / 'digits')
    results = json.loads((work / 'results.json').read_text())
    assert results['files']['backbone'] == str(work / 'addp' / 'backbone.pth')
    table = (work / 'results.md').read_text()
    # step 8 (--edits): the known tokens kept, the small generation file loads for generation
    edits = results['edits']
    assert edits['num_steps'] == 2 and edits['seeds'] == [0]
    for name, known in edits['known'].items():
        assert known['checked_tokens'] > 0 and known['known_token_mismatches'] == 0, name
    assert edits['num_images'] == 32 and 'Edits of the 32 val digits (2 steps' in table
    from addp_mm.apis import build_generation_model
    model, _ = build_generation_model(
        osp.join(ROOT, 'configs', 'toy', 'addp_vit-demo-p4_1xb32-2k_digits-32px.py'),
        edits['generation_checkpoint'])
    assert edits['generation_checkpoint'] == str(work / 'edits' / 'generation.pth')
    pipeline = tool('run_toy_pipeline')
    for name, _, _ in pipeline.ROWS + pipeline.DOWNSTREAM_ROWS:
        assert f'| {name} |' in table, name
    assert table.startswith('Quick run (--quick): 60 / 200 / 12 training iterations at batch 16')
    # (the imports are this process's, done already: no CPU time)
    for step in ['0 imports (torch, mmengine, mmpretrain, addp_mm)', 'total']:
        assert results['cpu_time_s'][step] >= 0 and f'| {step} |' in table, step
    assert results['cpu_time_s']['total'] > results['cpu_time_s']['3 ADDP pretraining'] > 0
    assert table in printed  # printed at the end
    # what a quick run cannot measure: null, its reason in not_measured and in the table
    expected_na = {'fid.samples': '8 samples; a toy FID needs at least 128',
                   'downstream.finetune10_addp': '2 iterations on 8 images check the handoff',
                   'downstream.linear_random': 'no random-init baseline',
                   'downstream.finetune10_random': 'no random-init baseline'}
    assert sorted(results['not_measured']) == sorted(expected_na)
    for name, path, _ in pipeline.ROWS + pipeline.DOWNSTREAM_ROWS:
        why = expected_na.get(path)
        assert (pipeline.lookup(results, path) is None) == (why is not None), path
        if why:
            assert results['not_measured'][path].startswith(f'quick run: {why}'), path
            assert f'| {name} | n/a (quick run: {why}' in table, name
        else:
            assert f'| {name} | n/a' not in table, name
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
    # what a working chain shows after 60 / 200 / 12 iterations
    tok, tp, addp, fid = (results[k] for k in ('tokenizer', 'token_predictor', 'addp', 'fid'))
    assert tok['val_mse'] < 0.5 * tok['mean_image_mse'], tok
    assert tp['val_masked_acc_at_0_5'] > 1.5 * tp['most_frequent_code_acc'], tp
    for part, first, last in ((tok, 'training_first_loss', 'training_last_loss'),
                              (tp, 'training_first_loss', 'training_last_loss'),
                              (addp, 'first_loss', 'last_loss')):
        assert math.isfinite(part[first]) and math.isfinite(part[last]), part
        assert part[last] < part[first], part
    assert fid['classifier_val_acc'] > 0.8, fid  # chance: 0.1
    assert 0 < fid['reconstructions_floor'] < 0.3 * fid['random_tokens_ceiling'], fid
    # chance is 10 %: 72 or more of the 359 val digits right by chance has P < 1e-8
    linear = results['downstream']['linear_addp']
    assert linear['per_seed'][0] > 20.0, linear
    # --reuse: the same evaluation of the same files, nothing trained again
    tool_in_process('run_toy_pipeline', args + ['--reuse'], ROOT)
    again = capsys.readouterr().out
    for step in ('1 tokenizer training', '2 token predictor training', '3 ADDP pretraining',
                 '4 generation'):
        assert f'{step}: reusing' in again, step
    assert 'digit classifier: reusing' in again
    assert 'earlier run, reused' in again  # the downstream runs
    reused = json.loads((work / 'results.json').read_text())
    for key in ('tokenizer', 'token_predictor', 'fid', 'downstream', 'not_measured'):
        assert reused[key] == results[key], key
