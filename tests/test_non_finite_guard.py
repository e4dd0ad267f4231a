"""The non-finite policy (``NonFiniteGuard*OptimWrapper``): in one process, through a real graph,
and on 2 CPU processes (gloo, ``tools/dist_train.sh``) with a NaN on one rank only."""
import copy
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import OPTIM_WRAPPERS

from addp_mm.engine.optimizers import NonFiniteGuardOptimWrapper, NonFiniteLossError

from conftest import free_port, run_command
from tiny_classifier import make_class_folders, tiny_classifier_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class TinyModel(BaseModel):
    """A real graph: the loss of an input holding a NaN is NaN, and so are its gradients."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 1)

    def forward(self, inputs, data_samples=None, mode='loss'):
        return dict(loss=self.fc2(torch.relu(self.fc1(inputs))).pow(2).mean())


def snapshot(model, wrapper):
    return ([p.detach().clone() for p in model.parameters()], copy.deepcopy(wrapper.optimizer.state_dict()))


def assert_same(a, b):
    (params_a, opt_a), (params_b, opt_b) = a, b
    assert all(torch.equal(x, y) for x, y in zip(params_a, params_b))
    assert opt_a['state'].keys() == opt_b['state'].keys() and opt_a['state']
    for k in opt_a['state']:
        for name, value in opt_a['state'][k].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b['state'][k][name])), (k, name)


def batch(nan=False):
    x = torch.randn(6, 4)
    if nan:
        x[2, 1] = float('nan')
    return dict(inputs=x)


def build_wrapper(model, cls=NonFiniteGuardOptimWrapper, **kwargs):
    return cls(optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05), **kwargs)


def test_fp32_default_stops_with_a_clear_error():
    torch.manual_seed(0)
    model = TinyModel()
    wrapper = build_wrapper(model)
    model.train_step(batch(), wrapper)
    before = snapshot(model, wrapper)
    with pytest.raises(NonFiniteLossError, match=r'not finite at iteration .* on rank\(s\) \[0\].*last good'):
        model.train_step(batch(nan=True), wrapper)
    assert_same(before, snapshot(model, wrapper))


@pytest.mark.parametrize('amp', [False, True])
def test_skip_leaves_weights_and_optimizer_state_untouched(amp, monkeypatch):
    """The skip decision through a real graph (mmengine's train_step -> update_params): neither
    the weights nor AdamW's moments/step counters move; the next finite step trains again; more
    than ``max_consecutive_skips`` skips in a row stop. ``amp=True`` runs the AMP wrapper class
    itself (mmengine refuses to build it without a GPU: we let it, and its loss scaler disables
    itself on a CPU), i.e. the same policy code path as on a GPU."""
    if amp:
        from addp_mm.engine.optimizers import NonFiniteGuardAmpOptimWrapper as cls
        monkeypatch.setattr('mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available', lambda: True)
        kwargs = dict(max_consecutive_skips=2)
        default = 100
    else:
        cls, kwargs, default = NonFiniteGuardOptimWrapper, dict(max_consecutive_skips=2), 0
    torch.manual_seed(0)
    model = TinyModel()
    assert cls(optimizer=torch.optim.SGD(model.parameters(), lr=0.1)).max_consecutive_skips == default
    wrapper = build_wrapper(model, cls, **kwargs)
    model.train_step(batch(), wrapper)
    before = snapshot(model, wrapper)
    log_vars = model.train_step(batch(nan=True), wrapper)
    assert not torch.isfinite(log_vars['loss'])  # the step really saw a NaN loss
    assert_same(before, snapshot(model, wrapper))
    assert all(p.grad is None for p in model.parameters())
    assert wrapper.total_skips == 1 and wrapper.consecutive_skips == 1
    model.train_step(batch(), wrapper)  # a finite step trains and resets the count
    assert not torch.equal(before[0][0], model.fc1.weight)
    assert wrapper.consecutive_skips == 0
    model.train_step(batch(nan=True), wrapper)
    model.train_step(batch(nan=True), wrapper)
    with pytest.raises(NonFiniteLossError, match='3 non-finite steps in a row'):
        model.train_step(batch(nan=True), wrapper)


def test_skip_under_gradient_accumulation_drops_only_the_bad_micro_batch():
    """accumulative_counts=2: a window with one NaN micro-batch steps with the good one's
    gradient (as if only that one had been seen); a window with only NaN ones does not step."""
    torch.manual_seed(0)
    model, twin = TinyModel(), TinyModel()
    twin.load_state_dict(model.state_dict())
    wrapper = build_wrapper(model, max_consecutive_skips=5, accumulative_counts=2)
    reference = build_wrapper(twin, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 4)
    reference.initialize_count_status(twin, 0, 4)
    good = batch()
    model.train_step(good, wrapper)
    model.train_step(batch(nan=True), wrapper)  # window end: steps with the good micro-batch
    twin.train_step(good, reference)
    reference._inner_count += 1  # the same window end, without a second micro-batch
    reference.step()
    reference.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))
    before = snapshot(model, wrapper)
    model.train_step(batch(nan=True), wrapper)
    model.train_step(batch(nan=True), wrapper)  # a window of NaNs only: no step
    assert_same(before, snapshot(model, wrapper))
    assert wrapper.total_skips == 3


def test_check_grads_catches_a_non_finite_gradient_of_a_finite_loss():
    torch.manual_seed(0)
    model = TinyModel()
    wrapper = build_wrapper(model, check_grads=True, max_consecutive_skips=1)
    model.train_step(batch(), wrapper)
    before = snapshot(model, wrapper)
    # sqrt at 0 has an infinite derivative: a finite loss with inf gradients
    model.forward = lambda inputs, data_samples=None, mode='loss': dict(
        loss=(model.fc1.weight * 0).sum() + torch.sqrt(model.fc2.bias * 0).sum())
    model.train_step(batch(), wrapper)
    assert_same(before, snapshot(model, wrapper))
    assert wrapper.total_skips == 1


def test_registered_and_used_by_the_pretraining_configs():
    from mmengine.config import Config
    assert OPTIM_WRAPPERS.get('NonFiniteGuardOptimWrapper') is NonFiniteGuardOptimWrapper
    assert OPTIM_WRAPPERS.get('NonFiniteGuardAmpOptimWrapper') is not None
    for name, wrapper in [('addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py', 'NonFiniteGuardAmpOptimWrapper'),
                          ('addp_vit-large-p16_32xb128-amp-coslr-800e_in1k-256px.py', 'NonFiniteGuardAmpOptimWrapper'),
                          ('addp_vit-demo-p16_1xb8-300iter_demo-64px.py', 'NonFiniteGuardOptimWrapper')]:
        cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', name))
        assert cfg.optim_wrapper.type == wrapper, name
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        build_wrapper(TinyModel(), max_consecutive_skips=-1)


# ---------------------------------------------------------------------- 2 processes (gloo)
PLUGIN = '''
"""Test plugin: a classifier whose loss is NaN on one rank at some iterations, and a hook that
writes each rank's weights and skip count after each iteration."""
import os.path as osp
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import HOOKS, MODELS


@MODELS.register_module()
class NaNOnOneRankClassifier(ImageClassifier):
    def __init__(self, nan_rank, nan_iters, **kwargs):
        super().__init__(**kwargs)
        self.nan_rank, self.nan_iters = nan_rank, nan_iters

    def loss(self, inputs, data_samples):
        losses = super().loss(inputs, data_samples)
        if get_rank() == self.nan_rank and MessageHub.get_current_instance().get_info('iter') + 1 in self.nan_iters:
            losses['loss'] = losses['loss'] * float('nan')  # still connected to the graph
        return losses


@HOOKS.register_module()
class DumpRankStateHook(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        torch.save(dict(state_dict=model.state_dict(), skips=runner.optim_wrapper.total_skips),
                   osp.join(runner.work_dir, f'rank{get_rank()}.pth'))


@RUNNERS.register_module()
class ErrorRecordingRunner(Runner):
    def train(self):
        try:
            return super().train()
        except Exception as e:
            with open(osp.join(self.work_dir, f'error{get_rank()}.txt'), 'w') as f:
                f.write(f'{type(e).__name__}: {e}')
            raise
'''

CONFIG_REST = '''
runner_type = 'ErrorRecordingRunner'
train_cfg = dict(type='IterBasedTrainLoop', max_iters=8)
optim_wrapper = dict(type='NonFiniteGuardOptimWrapper', max_consecutive_skips=1,
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=10),
                     logger=dict(type='LoggerHook', interval=1))
custom_hooks = [dict(type='DumpRankStateHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
'''


def dist_train(tmp_path, port):
    data = tmp_path / 'data'
    make_class_folders(str(data))
    (tmp_path / 'nan_plugin.py').write_text(PLUGIN)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(tiny_classifier_config(
        str(data), CONFIG_REST, batch_size=2, imports=('addp_mm', 'nan_plugin'),
        model_type='NaNOnOneRankClassifier', model_args='nan_rank=1, nan_iters=(4, 6, 7)'))
    work = tmp_path / 'work'
    env = {**os.environ, 'PORT': str(port), 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': f'{tmp_path}{os.pathsep}{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'}
    # a rank deciding alone would leave the other one waiting in DDP's all-reduce: the timeout
    # turns such a hang into a failure
    proc = run_command(['bash', 'tools/dist_train.sh', str(cfg), '2', '--work-dir', str(work)],
                       env=env, check=False, timeout=600, what='tools/dist_train.sh on 2 ranks')
    return proc.returncode, proc.stdout + proc.stderr, work


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.mark.slow
def test_two_ranks_skip_together_then_stop_together(tmp_path):
    """One run of 2 ranks with ``max_consecutive_skips=1`` and a NaN loss on rank 1 only, at
    iterations 4, 6 and 7: both ranks skip 4 and 6 (the same decision, identical weights), and
    stop together at 7 (two in a row), keeping iteration 6's checkpoint as the last good one."""
    rc, log, work = dist_train(tmp_path, port=free_port())
    assert rc != 0
    # both ranks stop at the same step, with the same decision
    errors = [(work / f'error{r}.txt').read_text() for r in (0, 1)]
    assert all(e.startswith('NonFiniteLossError: the loss is not finite at iteration 7 on rank(s) '
                            '[1]') for e in errors), (errors, log[-3000:])
    assert '(this rank: nan)' in errors[1] and 'this rank' not in errors[0]
    assert all('2 non-finite steps in a row' in e for e in errors), errors
    assert not (work / 'iter_7.pth').exists() and (work / 'iter_6.pth').exists()
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'iter_6.pth')
    # the ranks' state after iteration 6: the same skips, the same finite weights
    r0, r1 = load(work / 'rank0.pth'), load(work / 'rank1.pth')
    assert r0['skips'] == r1['skips'] == 2  # the same decisions on both ranks
    assert r0['state_dict'].keys() == r1['state_dict'].keys()
    assert all(torch.equal(v, r1['state_dict'][k]) for k, v in r0['state_dict'].items())
    assert all(torch.isfinite(v).all() for v in r0['state_dict'].values() if v.is_floating_point())
    # iterations 4 and 6 (the NaN on rank 1) changed nothing; iteration 5 trained again
    it3, it4, it5, it6 = (load(work / f'iter_{i}.pth')['state_dict'] for i in (3, 4, 5, 6))
    assert all(torch.equal(v, it4[k]) for k, v in it3.items())
    assert not all(torch.equal(v, it5[k]) for k, v in it4.items())
    assert all(torch.equal(v, it6[k]) for k, v in it5.items())
