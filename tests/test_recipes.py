"""The recipes match their sources: ImageNet evaluation, FID references, pretraining precision
(AMP scaler, float32 attention, TF32) and initialisation, weight-decay exemptions, and the
``pretrained`` alias of ``ADDPViT``.

The paste-in blocks of docs/user_guides/own_config.md are tested in ``test_configs.py``.
"""
import copy
import glob
import math
import os.path as osp
import re
import warnings

import numpy as np
import pytest
from conftest import require
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import HOOKS, MODELS
from PIL import Image

from addp_mm.errors import UsageError
from addp_mm.evaluation.fid import ImageFiles
from addp_mm.models.backbones import ADDPViT
from addp_mm.models.layers import Attention

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN = osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py')
PRETRAIN_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-*-p16_32xb128-*.py')))  # the release's
IMAGENET_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'imagenet', '*.py')))
COCO = osp.join(ROOT, 'configs', 'coco', 'mask-rcnn_vit-base-p16_addp-pre_lsj-100e_coco.py')


def _photo(path, h: int, w: int, seed: int = 0) -> str:
    """A smooth random RGB image (PNG: decoded identically by every reader)."""
    g = np.random.default_rng(seed)
    small = g.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    arr = np.clip(np.asarray(img).astype(np.int16) + g.integers(-20, 21, (h, w, 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return str(path)


def _torchvision_eval(path: str, size: int, crop: int, interpolation) -> np.ndarray:
    from torchvision import transforms
    t = transforms.Compose([transforms.Resize(size, interpolation=interpolation),
                            transforms.CenterCrop(crop)])
    return np.asarray(t(Image.open(path).convert('RGB')))


# ------------------------------------------------------------------------------ 3. ImageNet eval
@pytest.mark.parametrize('path', IMAGENET_CONFIGS, ids=osp.basename)
def test_imagenet_eval_pipeline_is_the_releases(path, tmp_path):
    """Release util/datasets.py build_transform, input 256 > 224: crop ratio 1.0, i.e. short
    side to 256 (bicubic), centre crop 256. Checked on the pipeline's pixels too."""
    require('mmpretrain')
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    from torchvision.transforms import InterpolationMode
    cfg = Config.fromfile(path)
    for loader in ('val_dataloader', 'test_dataloader'):
        pipeline = cfg[loader].dataset.pipeline
        assert [t.type for t in pipeline] == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
        resize, crop = pipeline[1], pipeline[2]
        assert (resize.scale, resize.edge, resize.interpolation, resize.backend) == (256, 'short', 'bicubic', 'pillow')
        assert crop.crop_size == 256
    import mmpretrain.datasets  # noqa: F401  (registers the transforms)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        transform = Compose(copy.deepcopy(cfg.test_dataloader.dataset.pipeline))
    for h, w in ((300, 411), (517, 389)):
        img = _photo(tmp_path / f'{h}x{w}.png', h, w)
        ours = transform(dict(img_path=img))['inputs'].numpy()[::-1].transpose(1, 2, 0)  # BGR CHW -> RGB HWC
        release = _torchvision_eval(img, 256, 256, InterpolationMode.BICUBIC)
        assert ours.shape == release.shape == (256, 256, 3)
        assert np.array_equal(ours, release)


# ------------------------------------------------------------------------------ 4. FID references
def test_fid_reference_resize_is_prepare_imagenet_val(tmp_path):
    """The release's prepare_imagenet_val.py: torchvision Resize(256) then CenterCrop(256)."""
    from torchvision.transforms import InterpolationMode
    for h, w in ((300, 420), (400, 333)):
        img = _photo(tmp_path / f'{h}x{w}.png', h, w, seed=h)
        ours = ImageFiles([img], resize=256)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(ours, _torchvision_eval(img, 256, 256, InterpolationMode.BILINEAR))
        assert not np.array_equal(ours, _torchvision_eval(img, 256, 256, InterpolationMode.BICUBIC))


def test_fid_images_of_mixed_sizes_name_the_fix(tmp_path):
    files = [_photo(tmp_path / 'a.png', 32, 32), _photo(tmp_path / 'b.png', 40, 32)]
    images = ImageFiles(files)
    assert images[0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match='--ref-resize 256'):
        images[1]
    assert ImageFiles(files, resize=24)[1].shape == (3, 24, 24)


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'configs', 'generation', '*.py'))),
                         ids=osp.basename)
def test_generation_configs_show_the_fid_command_with_ref_resize(path):
    text = open(path).read()
    comments = '\n'.join(line.lstrip('# ') for line in text.splitlines() if line.startswith('#'))
    commands = re.findall(r'python tools/fid_is\.py(?:[^\n]*\\\n)*[^\n]*', comments)
    assert commands, f'{path} shows no tools/fid_is.py command'
    for cmd in commands:
        assert '--ref-dir data/imagenet/val' in cmd and '--ref-resize 256' in cmd, cmd


# ------------------------------------------------------------------------------ 5. AMP, attention, TF32
@pytest.mark.parametrize('path', PRETRAIN_CONFIGS, ids=osp.basename)
def test_pretraining_amp_scaler_and_tf32(path):
    cfg = Config.fromfile(path)
    wrapper = cfg.optim_wrapper
    # mmengine's AmpOptimWrapper, with the non-finite guard that all ranks agree on
    assert wrapper.type == 'NonFiniteGuardAmpOptimWrapper'
    from mmengine.optim import AmpOptimWrapper
    from addp_mm.engine import NonFiniteGuardAmpOptimWrapper
    assert issubclass(NonFiniteGuardAmpOptimWrapper, AmpOptimWrapper)
    # release --amp_growth_interval 500 (mmengine's GradScaler default would be 2000)
    assert wrapper.loss_scale == dict(init_scale=2. ** 16, growth_interval=500)
    scaler = torch.amp.GradScaler('cpu', **wrapper.loss_scale)  # what AmpOptimWrapper builds
    assert scaler.get_growth_interval() == 500 and scaler.get_scale() == 2. ** 16
    assert dict(type='TF32Hook', allow_tf32=False) in cfg.custom_hooks
    model = cfg.model
    assert (model.backbone.attn_fp32 and model.neck.attn_fp32
            and model.target_generator.token_predictor.attn_fp32)


def test_tf32_hook_sets_and_restores_the_flags():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = True
        hook = HOOKS.build(dict(type='TF32Hook', allow_tf32=False))
        hook.before_run(None)
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        hook.after_run(None)
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def _attention(attn_fp32: bool) -> Attention:
    torch.manual_seed(0)
    attn = Attention(64, 4, use_rel_pos=True, rel_pos_size=(4, 4), attn_fp32=attn_fp32)
    nn.init.normal_(attn.qkv.weight, std=0.3)  # large logits, where low precision shows
    nn.init.normal_(attn.rel_pos_h, std=0.5)
    nn.init.normal_(attn.rel_pos_w, std=0.5)
    return attn.eval()


def test_attention_fp32_under_autocast(monkeypatch):
    """attn_fp32: logits, softmax and the weighted sum in float32 with autocast off inside,
    output back in the autocast dtype; without it they run in the autocast dtype."""
    x = torch.randn(8, 16, 64, generator=torch.Generator().manual_seed(0))
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype, attn_mask.dtype, torch.is_autocast_enabled('cpu')))
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', spy)
    ref = _attention(True)(x, (4, 4))  # float32 everywhere
    outs = {}
    for flag in (True, False):
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            outs[flag] = _attention(flag)(x, (4, 4))
        assert outs[flag].dtype == torch.bfloat16
    f32, bf16 = torch.float32, torch.bfloat16
    assert seen[1] == (f32, f32, f32, f32, False)
    assert seen[2] == (bf16, bf16, bf16, bf16, True)
    # the float32 attention is closer to float32 on average (measured 0.0074-0.0080 vs
    # 0.0082-0.0094 over 8 input draws; the max error is not robust: the shared bf16 qkv)
    err = {flag: (outs[flag].float() - ref).abs().mean().item() for flag in outs}
    assert err[True] < 0.95 * err[False], err


def test_attention_fp32_changes_nothing_in_float32():
    x = torch.randn(2, 16, 64)
    with torch.no_grad():
        assert torch.equal(_attention(True)(x, (4, 4)), _attention(False)(x, (4, 4)))


def test_attn_fp32_where_the_release_has_it():
    """On in the pretraining model (encoder, decoder, token predictor), off downstream."""
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-demo-p16_1xb8-300iter_demo-64px.py'))
    model = MODELS.build(copy.deepcopy(demo.model))
    for part in (model.backbone, model.neck, model.target_generator.token_predictor):
        flags = [m.attn_fp32 for m in part.modules() if isinstance(m, Attention)]
        assert flags and all(flags), type(part).__name__
    backbone = ADDPViT(arch='demo', img_size=32, patch_size=8)
    assert not any(m.attn_fp32 for m in backbone.modules() if isinstance(m, Attention))


# ------------------------------------------------------------------------------ 6. initialisation
WIDE = dict(embed_dims=256, num_layers=2, num_heads=4, feedforward_channels=1024)


def _linear_stats(model: nn.Module):
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            fan_out, fan_in = m.weight.shape
            yield name, m, fan_in, fan_out


@pytest.mark.parametrize('mode', ['release', 'trunc_normal'])
def test_encoder_init_statistics(mode):
    torch.manual_seed(0)
    model = ADDPViT(arch=WIDE, img_size=64, patch_size=16, init_mode=mode)
    model.init_weights()
    linears = list(_linear_stats(model))
    assert len(linears) == 4 * WIDE['num_layers']
    for name, m, fan_in, fan_out in linears:
        w = m.weight.detach()
        if mode == 'release':  # Xavier-uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out))
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound, name
            assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02), name
        else:  # truncated N(0, 0.02)
            assert w.std().item() == pytest.approx(0.02, rel=0.02), name
        assert abs(w.mean().item()) < 1e-3, name
        assert torch.count_nonzero(m.bias) == 0, name
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    with pytest.raises(ValueError, match='init_mode'):
        ADDPViT(arch='demo', init_mode='xavier')


def test_pretraining_initialises_the_encoder_as_the_release():
    for path in PRETRAIN_CONFIGS:
        assert Config.fromfile(path).model.backbone.init_mode == 'release', path
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-demo-p16_1xb8-300iter_demo-64px.py'))
    cfg = copy.deepcopy(demo.model)
    cfg.backbone.arch = WIDE
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    for name, m, fan_in, fan_out in _linear_stats(model.backbone):
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02), name


# ------------------------------------------------------------------------------ 7. weight decay
def _decays(cfg):
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    scope = cfg.default_scope
    __import__(f'{scope}.utils', fromlist=['x']).register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        cfg.optim_wrapper.type = 'OptimWrapper'
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    return model, {names[id(p)]: g['weight_decay'] for g in wrapper.optimizer.param_groups
                   for p in g['params']}


def _narrow_detector(cfg):
    cfg.model.backbone.init_cfg = None
    depth = ADDPViT.arch_zoo[cfg.model.backbone.arch]['num_layers']
    cfg.model.backbone.arch = dict(embed_dims=64, num_layers=depth, num_heads=4, feedforward_channels=256)
    cfg.model.neck.in_channels = 64


@pytest.mark.parametrize('name', ['base', 'large'])
def test_coco_weight_decay_matches_vitdet(name):
    """detectron2's ViTDet: weight_decay_norm=0 (torch.nn norm layers: the backbone's
    LayerNorms) and pos_embed 0; everything else, biases and relative-position tables included,
    and the pyramid's / heads' channel LayerNorms (detectron2's own class), at 0.1."""
    require('mmdet')
    cfg = Config.fromfile(COCO.replace('base', name))
    _narrow_detector(cfg)
    model, wd = _decays(cfg)
    no_decay = {n for n, v in wd.items() if v == 0}
    expected = {'backbone.pos_embed'} | {n for n in wd if re.match(r'backbone\.blocks\.\d+\.norm[12]\.', n)}
    assert no_decay == expected
    assert all(v == pytest.approx(0.1) for n, v in wd.items() if n not in expected)
    for decayed in ('backbone.blocks.0.attn.qkv.bias', 'backbone.blocks.0.attn.rel_pos_h',
                    'backbone.patch_embed.proj.bias', 'rpn_head.rpn_conv.0.conv.bias'):
        assert wd[decayed] == pytest.approx(0.1), decayed
    ln2d = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm) and not n.startswith('backbone')]
    assert any(n.startswith('neck.') for n in ln2d) and any(n.startswith('roi_head.') for n in ln2d)
    assert all(wd[f'{n}.weight'] == pytest.approx(0.1) for n in ln2d)


def test_layer_decay_rules_and_errors():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ADDPViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                                    img_size=32, patch_size=8)
            self.neck = nn.Sequential(nn.Conv2d(32, 8, 1), nn.GroupNorm(2, 8))
            self.head = nn.Linear(8, 3)

    def groups(**paramwise):
        ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type='LayerDecayOptimWrapperConstructor',
            optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.1)),
            paramwise_cfg=dict(layer_decay_rate=1.0, **paramwise)))
        net = Net()
        names = {id(p): n for n, p in net.named_parameters()}
        out = {}
        for g in ctor(net).optimizer.param_groups:
            for p in g['params']:
                out[names[id(p)]] = (g['weight_decay'], g['lr'])
        return out

    default = groups()
    for n in ('backbone.pos_embed', 'backbone.cls_token', 'backbone.blocks.0.norm1.weight',
              'backbone.blocks.0.attn.qkv.bias', 'neck.1.weight', 'head.bias'):
        assert default[n][0] == 0, n
    assert default['head.weight'][0] == pytest.approx(0.1)
    # norms exempt, biases decayed; the longest custom key wins and may scale the lr
    rules = groups(norm_decay_mult=0.0, bias_decay_mult=1.0, no_decay_names=(),
                   custom_keys={'head': dict(decay_mult=0.5), 'head.bias': dict(decay_mult=0.0, lr_mult=2.0)})
    assert rules['backbone.blocks.0.norm1.weight'][0] == 0 and rules['neck.1.bias'][0] == 0
    assert rules['backbone.blocks.0.attn.qkv.bias'][0] == pytest.approx(0.1)
    assert rules['neck.0.bias'][0] == pytest.approx(0.1) and rules['backbone.pos_embed'][0] == pytest.approx(0.1)
    assert rules['head.weight'] == (pytest.approx(0.05), 1.0)
    assert rules['head.bias'] == (0.0, pytest.approx(2.0))
    with pytest.raises(UsageError, match='decay_1d'):
        groups(decay_1d=True)


# ------------------------------------------------------------------------------ 1. pretrained
def test_addp_vit_pretrained_alias(tmp_path):
    kw = dict(arch='demo', img_size=32, patch_size=8)
    torch.manual_seed(3)
    src = ADDPViT(**kw)
    src.init_weights()
    path = str(tmp_path / 'enc.pth')
    torch.save(dict(state_dict=src.state_dict()), path)
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = ADDPViT(pretrained=path, **kw)
    assert model.init_cfg == dict(type='Pretrained', checkpoint=path)
    model.init_weights()
    assert torch.equal(model.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert ADDPViT(pretrained=None, **kw).init_cfg is None  # None: ignored, no warning
    with pytest.raises(ValueError, match='both'):
        ADDPViT(pretrained=path, init_cfg=dict(type='Pretrained', checkpoint=path), **kw)
    with pytest.raises(ValueError, match='model.pretrained'):
        ADDPViT(pretrained='open-mmlab://resnet50_v1c', **kw)
    with pytest.raises(UsageError, match='pretrained'):
        ADDPViT(pretrained=3, **kw)
