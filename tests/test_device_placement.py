"""What a GPU's first run would hit, found on a CPU: tensors made on the host inside a forward,
reads of the device on a step's hot path, and ops that cannot take a reduced-precision dtype.

* Placement: every model part runs on a fake ``cuda`` device (torch's ``FakeTensorMode``: shapes,
  dtypes and devices without data or a GPU). A tensor made on the CPU inside a forward that meets
  a device tensor raises ``FakeTensorDeviceMismatchError`` there, as CUDA would (a zero-dim CPU
  tensor is allowed, as on CUDA). Work on real host tensors (the mask schedule's draw of its step
  from host tables) runs for real, as it would beside a GPU. The backward pass runs on the
  ``meta`` device instead: torch's autograd engine needs a CUDA runtime for ``cuda`` tensors, even
  fake ones; on ``meta`` a CPU tensor meeting a device tensor raises as well.
* Host syncs: a step runs on the ``meta`` device under :class:`SyncCounter`, which records every
  op that makes the host wait for a device (a scalar read, a data-dependent output size, a copy
  between the host and the device) with where it was called, and answers it with zeros so that
  the step runs on.
* Reduced precision: the pretraining step under CPU autocast (fp16 with a loss scaler, bf16 as the
  CPU configs' wrapper runs it), generation and an edit under the sampler's fp16 / bf16 autocast.
"""
import importlib
import os.path as osp
import traceback
from collections import Counter
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import RuntimeInfoHook
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.registry import DefaultScope, MODELS
from torch._subclasses.fake_tensor import (FakeTensor, FakeTensorDeviceMismatchError,
                                           FakeTensorMode, unset_fake_temporarily)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from addp_mm.apis import edit
from addp_mm.engine.optimizers import (CPUAutocastOptimWrapper, NonFiniteGuardAmpOptimWrapper,
                                       NonFiniteGuardOptimWrapper)
from addp_mm.models.generation import ADDPSampler, addp_sampler
from addp_mm.models.utils import to_uint8
from conftest import require
from test_backbone import tiny as tiny_vit
from test_pretrain_model import IMG, tiny_cfg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
aten = torch.ops.aten


# ----------------------------------------------------------------------------------------------
# the fake cuda device
# ----------------------------------------------------------------------------------------------
class HostWorkRunsForReal(TorchDispatchMode):
    """Above a ``FakeTensorMode``: an op whose tensors are all real and whose result stays on the
    CPU is host work (e.g. drawing the diffusion step from a host table) and runs for real;
    everything else goes to the fake device."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        device = kwargs.get('device')
        on_host = device is None or torch.device(device).type == 'cpu'
        real_host = not any(isinstance(t, FakeTensor) or t.device.type != 'cpu' for t in tensors)
        if on_host and real_host:
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        return func(*args, **kwargs)


def to_fake_cuda(module: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """``module`` with every parameter and buffer replaced by a fake tensor on ``cuda``."""
    for m in module.modules():
        for store in (m._parameters, m._buffers):
            for name, t in list(store.items()):
                if t is None:
                    continue
                fake = mode.from_tensor(t.detach())
                with mode:
                    fake = fake.to('cuda')
                if isinstance(t, nn.Parameter):
                    fake = nn.Parameter(fake, t.requires_grad)
                store[name] = fake
    return module


@contextmanager
def fake_cuda():
    """A fake ``cuda`` device: yields ``mode``; build inputs and run the parts inside."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, HostWorkRunsForReal():
        yield mode


def on_cuda(*outputs) -> bool:
    tensors = [t for t in tree_flatten(outputs)[0] if isinstance(t, torch.Tensor)]
    return bool(tensors) and all(t.device.type == 'cuda' for t in tensors)


# ----------------------------------------------------------------------------------------------
# the parts, tiny
# ----------------------------------------------------------------------------------------------
def addp_model():
    torch.manual_seed(0)
    return MODELS.build(tiny_cfg())


def vit_with_windows():
    # windows of 3 on a 5x4 grid (padded to 6x6) in blocks 0 and 2, global rel-pos in block 1
    return tiny_vit(with_cls_token=False, window_size=3, window_block_indexes=(0, 2),
                    use_rel_pos=True, out_type='featmap')


TASKS = {  # the demo configs of each toolbox: backbone (+ neck) as the recipes build them
    'classifier': 'configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py',
    'segmenter': 'configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py',
    'detector': 'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py',
}


def task_model(task: str) -> nn.Module:
    """The demo config's model, built in its toolbox's scope (no weights are read)."""
    require('mmcv.ops', 'the toolboxes need mmcv with its compiled ops')
    cfg = Config.fromfile(osp.join(ROOT, TASKS[task]))
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        return importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)


def part_model(part: str) -> nn.Module:
    if part == 'vit_windows_rel_pos':
        return vit_with_windows()
    if part == 'simple_fpn':
        return MODELS.build(dict(type='SimpleFPN', in_channels=32, out_channels=16, num_outs=5))
    if part in TASKS:
        return task_model(part)
    return addp_model()


def run_part(part: str, model: nn.Module, device: str):
    """The part's forward (train mode) on inputs made on ``device``, its output shapes checked."""
    model.train()
    if part == 'vit_windows_rel_pos':
        out = model(torch.rand(2, 3, 80, 64, device=device))
        assert out[-1].shape == (2, 32, 5, 4)
    elif part == 'decoder':
        B, N = 2, model.neck.num_patches
        mask = torch.rand(B, N, device=device).argsort(1).argsort(1) < 11
        ids = torch.randint(0, 64, (B, N), device=device)
        out = model.neck(torch.rand(B, N + 1, 32, device=device), ids, mask, N - 11)
        assert out.shape == (B, N, model.neck.vocab_size)
    elif part == 'noiser':
        out = model.target_generator(torch.rand(2, 3, IMG, IMG, device=device))
        assert out['x_t'].shape == (2, 3, IMG, IMG) and isinstance(out['num_masked'], int)
    elif part == 'addp_loss':
        out = model.loss(torch.rand(2, 3, IMG, IMG, device=device))
        assert out['loss'].shape == ()
    elif part == 'simple_fpn':
        out = model((torch.rand(2, 32, 4, 4, device=device), ))
        assert [o.shape[-1] for o in out] == [16, 8, 4, 2, 1]
    else:  # the backbone path at 64 px (the configs' 128: position tables resized on the fly):
        # encoder and neck (detector, segmenter), encoder and head (classifier)
        out = model.extract_feat(torch.rand(2, 3, 64, 64, device=device))
        if part == 'classifier':
            out = model.head(out)
    return out


# ----------------------------------------------------------------------------------------------
# placement: forward on a fake cuda device
# ----------------------------------------------------------------------------------------------
def test_a_host_tensor_made_in_a_forward_fails_on_the_fake_device():
    """The check itself: a position index made without ``device=`` fails, one made from the
    input's device runs, a zero-dim host tensor is allowed (as on CUDA)."""
    class Planted(nn.Module):
        def __init__(self, where):
            super().__init__()
            self.where = where

        def forward(self, x):
            device = x.device if self.where == 'input' else None
            return x + torch.arange(x.shape[-1], device=device) + torch.tensor(1.)

    with fake_cuda():
        x = torch.rand(2, 4, device='cuda')
        assert on_cuda(Planted('input')(x))
        with pytest.raises(FakeTensorDeviceMismatchError, match='cuda:0 and cpu|cpu and cuda:0'):
            Planted('host')(x)


@pytest.mark.parametrize('part', ['vit_windows_rel_pos', 'decoder', 'noiser', 'addp_loss',
                                  'simple_fpn', 'classifier', 'segmenter', 'detector'])
def test_parts_on_a_fake_cuda_device(part):
    model = part_model(part)
    with fake_cuda() as mode:
        assert on_cuda(run_part(part, to_fake_cuda(model, mode), 'cuda'))


@pytest.fixture
def no_device_generator(monkeypatch):
    """``torch.Generator(device='cuda')`` needs a CUDA runtime: the sampler draws from the
    device's default generator instead (the same ops)."""
    monkeypatch.setattr(addp_sampler, '_generator', lambda device, generator, seed: generator)


@pytest.mark.parametrize('part', ['step', 'generation', 'inpaint', 'outpaint'])
def test_sampler_on_a_fake_cuda_device(part, no_device_generator):
    model = addp_model().eval()
    sampler = ADDPSampler(num_steps=2, top_p=0.9)
    with fake_cuda() as mode:
        to_fake_cuda(model, mode)
        if part == 'step':
            B, N = 2, model.neck.num_patches
            mask = torch.rand(B, N, device='cuda').argsort(1).argsort(1) < 11
            tokens = torch.randint(0, 64, (B, N), device='cuda')
            with torch.no_grad():
                logits = sampler.predict_logits(model, torch.rand(B, 3, IMG, IMG, device='cuda'),
                                                tokens, mask, num_visible=N - 11)
                ids = sampler.sample_ids(logits)
                mask_next = sampler.next_mask(logits, ids, mask, 0, num_unknown=11)
                out = sampler.render(model, logits, ids, mask_next)
            assert out.shape == (B, 3, IMG, IMG)
        elif part == 'generation':
            out = sampler.sample(model, 2)
        else:
            image = torch.rand(1, 3, IMG, IMG, device='cuda')
            if part == 'inpaint':
                region = edit.box_region(model, (IMG, IMG), (0, 0, 32, 32))
                result = edit.inpaint(model, sampler, image, region, num=2)
            else:
                result = edit.outpaint(model, sampler, image, (16, 0, 0, 16))
                assert result.grid_hw == (5, 5)
            # the input picture of tools/edit.py, from the canvas and the host region
            marked = edit.mark_region(to_uint8(result.canvas)[0], result.region_pixels[0])
            out = result.images, result.canvas, marked
        assert on_cuda(out)


# ----------------------------------------------------------------------------------------------
# placement: forward and backward on the meta device
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('part', ['vit_windows_rel_pos', 'addp_loss', 'simple_fpn', 'classifier',
                                  'segmenter', 'detector'])
def test_trained_parts_forward_and_backward_on_meta(part):
    model = part_model(part).to('meta')
    out = run_part(part, model, 'meta')
    total = sum(t.float().sum() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
    total.backward()
    used = (model.backbone, model.neck) if part in ('segmenter', 'detector') else (model, )
    grads = [p.grad for m in used for p in m.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device.type == 'meta' for g in grads)


# ----------------------------------------------------------------------------------------------
# host syncs
# ----------------------------------------------------------------------------------------------
DATA_DEPENDENT = {aten.nonzero.default, aten.masked_select.default, aten._unique2.default,
                  aten.unique_dim.default, aten.unique_consecutive.default,
                  aten.repeat_interleave.Tensor, aten.bincount.default}
# indexing with a boolean mask: the kernel counts the mask (a nonzero inside it)
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
            aten._index_put_impl_.default}


class SyncCounter(TorchDispatchMode):
    """Records the ops on device (non-CPU) tensors that make the host wait: scalar reads
    (``.item()``, ``int()`` / ``bool()`` / ``float()`` of a tensor; ``tolist`` goes through a
    copy), ops whose output size depends on the data (``nonzero``, ``unique``, indexing with a
    boolean mask, ...), ``equal``, and copies between the host and the device (``.cpu()``,
    ``.to(device)`` of a host tensor: synchronous unless pinned and non-blocking). Each is
    answered with zeros so that the step runs on. ``self.syncs``: ``(op, 'file (function)')``."""

    def __init__(self):
        super().__init__()
        self.syncs = []

    def _where(self) -> str:
        for frame in reversed(traceback.extract_stack()[:-2]):
            if 'torch/' not in frame.filename and 'test_device_placement' not in frame.filename:
                return f'{osp.basename(frame.filename)} ({frame.name})'
        return '?'

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        on_device = any(t.device.type != 'cpu' for t in tensors)
        name = func.overloadpacket.__name__
        if func is aten._local_scalar_dense.default and on_device:
            self.syncs.append(('item', self._where()))
            return False if args[0].dtype == torch.bool else 0
        if func is aten.equal.default and on_device:
            self.syncs.append(('equal', self._where()))
            return True
        if func in INDEXING and on_device and any(
                i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
            self.syncs.append(('boolean-mask index', self._where()))
            if func is aten.index.Tensor:  # as if the mask selected nothing
                mask = next(i for i in args[1] if i is not None)
                return args[0].new_zeros((0, *args[0].shape[mask.dim():]))
            return args[0]  # an assignment through the mask: left as it was
        if func in DATA_DEPENDENT and on_device:
            self.syncs.append((name, self._where()))
            return torch.zeros(0, *([args[0].dim()] if name == 'nonzero' else []),
                               dtype=torch.long, device=args[0].device)
        if func is aten._to_copy.default:
            src, dst = args[0].device, torch.device(kwargs.get('device') or args[0].device)
            if (src.type == 'cpu') != (dst.type == 'cpu'):
                self.syncs.append((f'copy {src.type}->{dst.type}', self._where()))
                if dst.type == 'cpu':
                    return torch.zeros(args[0].shape, dtype=kwargs.get('dtype') or args[0].dtype)
        if func is aten.copy_.default:
            dst, src = args[0].device, args[1].device
            if (src.type == 'cpu') != (dst.type == 'cpu') and args[1].dim() > 0:
                self.syncs.append((f'copy {src.type}->{dst.type}', self._where()))
                if dst.type == 'cpu':
                    return args[0].zero_()
        return func(*args, **kwargs)

    def summary(self) -> Counter:
        return Counter(self.syncs)


def host_batch(n: int):
    """The pretraining batch as the dataloader gives it: uint8 host images."""
    return dict(inputs=[torch.randint(0, 255, (3, IMG, IMG), dtype=torch.uint8) for _ in range(n)])


def test_host_syncs_of_a_pretraining_step():
    """``train_step`` (data preprocessor, noiser, encoder, decoder, loss, backward, the configs'
    non-finite guard, AdamW) and mmengine's logging of its loss: the batch's upload, one read of
    the guard's flags, one read of the logged loss; nothing in the model's forward or backward."""
    model = addp_model().to('meta').train()
    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = NonFiniteGuardOptimWrapper(optimizer=torch.optim.AdamW(params, lr=1e-3))
    runner = SimpleNamespace(message_hub=MessageHub.get_instance('test_device_placement'))
    with SyncCounter():
        model.train_step(host_batch(2), wrapper)  # AdamW's state exists from now on
    with SyncCounter() as counter:
        log_vars = model.train_step(host_batch(2), wrapper)
        RuntimeInfoHook().after_train_iter(runner, 0, outputs=log_vars)
    assert log_vars['loss'].device.type == 'meta'
    assert counter.summary() == Counter({
        ('copy cpu->meta', 'data_preprocessor.py (cast_data)'): 2,  # one per image
        ('copy meta->cpu', 'non_finite_guard.py (_bad_ranks)'): 1,  # all ranks finite?
        ('item', 'message_hub.py (_get_valid_value)'): 1,          # the loss, logged
    }), counter.syncs


def test_host_syncs_of_generation_steps(no_device_generator):
    """Generation reads nothing from the device; an edit uploads its host mask (twice: the
    sampler's copy and the result's), whatever its number of steps."""
    model = addp_model().to('meta').eval()
    with SyncCounter() as counter:
        images = ADDPSampler(num_steps=3, top_p=0.9).sample(model, 2)
    assert images.shape == (2, 3, IMG, IMG) and counter.syncs == []
    image = torch.rand(1, 3, IMG, IMG, device='meta')
    region = edit.box_region(model, (IMG, IMG), (0, 0, 32, 32))
    for num_steps in (1, 3):
        with SyncCounter() as counter:
            edit.inpaint(model, ADDPSampler(num_steps=num_steps), image, region, num=2)
        assert counter.summary() == Counter({
            ('copy cpu->meta', 'addp_sampler.py (edit)'): 1,  # the host mask, counted first
            ('copy cpu->meta', 'edit.py (_edit)'): 1,  # the same, for the result's tables
        }), counter.syncs
    with SyncCounter() as counter:
        edit.outpaint(model, ADDPSampler(num_steps=2), image, (16, 0, 0, 16), num=2)
    assert counter.summary() == Counter({
        ('copy cpu->meta', 'edit.py (outpaint)'): 1,  # the image's place on the larger grid
        ('copy cpu->meta', 'addp_sampler.py (edit)'): 1,
        ('copy cpu->meta', 'edit.py (_edit)'): 1,
    }), counter.syncs


@pytest.mark.filterwarnings('ignore:`torch.cuda.amp.GradScaler:FutureWarning')
@pytest.mark.parametrize('dtype', ['fp16', 'bf16'])
def test_pretraining_step_under_cpu_autocast(dtype, monkeypatch):
    """The whole ``train_step`` under CPU autocast: fp16 through the AMP configs' wrapper and its
    loss scaler (scaled backward, unscale, the inf check, step, scale update), bf16 through the
    wrapper the CPU runs of the AMP configs use. No op refuses its dtype; the loss is finite and
    the weights move; matrix products do run in the reduced type."""
    model = addp_model().train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    if dtype == 'fp16':
        # mmengine's AmpOptimWrapper accepts GPUs only and autocasts a CPU to bf16 only
        monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)

        class FP16OnTheCPU(NonFiniteGuardAmpOptimWrapper):
            @contextmanager
            def optim_context(self, model):
                with OptimWrapper.optim_context(self, model), \
                        torch.autocast('cpu', dtype=torch.float16):
                    yield

        with pytest.warns(UserWarning, match='CUDA is not available'):
            wrapper = FP16OnTheCPU(optimizer=optimizer)
        wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**10)
    else:
        wrapper = CPUAutocastOptimWrapper(optimizer=optimizer)
    before = [p.detach().clone() for p in params]
    with DtypeCounter() as matmuls:
        losses = [model.train_step(host_batch(2), wrapper)['loss'] for _ in range(2)]
    reduced = torch.float16 if dtype == 'fp16' else torch.bfloat16
    assert matmuls.dtypes[reduced] > 0 and matmuls.dtypes[torch.float32] > 0, matmuls.dtypes
    assert all(torch.isfinite(loss) for loss in losses)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in params)
    assert sum(not torch.equal(a, p) for a, p in zip(before, params)) > len(params) // 2
    if dtype == 'fp16':
        assert wrapper.loss_scaler.get_scale() == 2.**10  # two finite steps: the scale stays


@pytest.mark.parametrize('dtype', ['fp16', 'bf16'])
def test_generation_and_an_edit_under_cpu_autocast(dtype):
    """The sampler's autocast (encoder, decoder, VQ decoder; sampling stays float32) in fp16 and
    bf16: no op refuses its dtype, the images are finite float32, matrix products ran reduced."""
    model = addp_model().eval()
    sampler = ADDPSampler(num_steps=2, top_p=0.9)
    region = edit.box_region(model, (IMG, IMG), (0, 0, 32, 32))
    with DtypeCounter() as matmuls:
        images = sampler.sample(model, 2, seed=0, autocast_dtype=dtype)
        edited = edit.inpaint(model, sampler, torch.rand(1, 3, IMG, IMG), region, num=2, seed=0,
                              autocast_dtype=dtype).images
    assert matmuls.dtypes[torch.float16 if dtype == 'fp16' else torch.bfloat16] > 0
    for out in (images, edited):
        assert out.dtype == torch.float32 and out.shape == (2, 3, IMG, IMG)
        assert torch.isfinite(out).all()


MATRIX_PRODUCTS = (aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution,
                   aten._scaled_dot_product_flash_attention_for_cpu)


class DtypeCounter(TorchDispatchMode):
    """How many matrix products ran in each dtype."""

    def __init__(self):
        super().__init__()
        self.dtypes = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in MATRIX_PRODUCTS:
            first = out[0] if isinstance(out, (tuple, list)) else out
            self.dtypes[first.dtype] += 1
        return out
