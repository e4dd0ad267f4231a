"""Every shipped config builds and runs, and ``ADDPViT`` drops into stock toolbox configs.

For every config under ``configs/{coco,ade20k,imagenet,demo}``: ``Config.fromfile`` works, the model
builds in its toolbox's scope without weights (``init_cfg=None`` for the backbone), the optimizer
wrapper builds with our layer-decay constructor, and one forward + backward runs on the CPU at a
reduced input size through the toolbox's own ``data_preprocessor``. The demo configs also take an
optimizer step and predict.

Reductions made for the CPU, none of which changes the architecture:

* inputs of 128x128 (detection), 64x64 (segmentation, classification) instead of the recipe's
  1024 / 512 / 256; the fixed-size padding (``BatchFixedSizePad``, ``SegDataPreProcessor.size``)
  is set to the test size;
* detection: fewer RPN proposals and sampled RoIs (``train_cfg``), so the 4-conv box head runs on
  64 RoIs rather than 512;
* SyncBN (mmseg's default) is converted to BN, and AMP wrappers to plain ``OptimWrapper``: no GPU;
* ViT-L configs keep their 24 blocks (out_indices, window / global blocks, layer-decay groups as
  configured) but run at width 256 instead of 1024 (the neck / head widths are checked against
  1024 first): full-width ViT-L on 2 CPU cores would take most of this file's time budget.

Drop-in: the blocks of docs/user_guides/own_config.md marked ``<!-- paste: TAG -->`` are read
from that page and pasted verbatim under the stock config named there (:data:`STOCK`). The ViT-B
blocks are checked against ViT-B, narrowed to width 64 (all 12 blocks kept), pointed at a small
file the test writes, and train one step and predict at a reduced input size; the small
machine's blocks run as written at 128 px (only their checkpoint file is written by the test).
Each toolbox's "your data" block is a file whose ``_base_`` is its small block's (:data:`DATA_OF`):
the two, as written, read the demo data's folders and train a few iterations with tools/train.py,
evaluating at the end.
"""
import glob
import json
import math
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from conftest import require, tool

require('mmcv.ops', 'mmcv with its compiled ops is needed by the toolboxes')

from mmengine.config import Config  # noqa: E402
from mmengine.model.utils import revert_sync_batchnorm  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import InstanceData, PixelData  # noqa: E402

# the plugin's registrations (the configs' custom_imports does this inside a Runner)
import addp_mm.engine.optimizers  # noqa: E402,F401
import addp_mm.models.backbones  # noqa: E402,F401
import addp_mm.models.necks  # noqa: E402,F401
from addp_mm.model_index import config_scope  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIRS = ('coco', 'ade20k', 'imagenet', 'demo')
CONFIGS = sorted(p for d in CONFIG_DIRS for p in glob.glob(osp.join(ROOT, 'configs', d, '*.py')))

DET_SIZE, SEG_SIZE, CLS_SIZE = 128, 64, 64
# the mmdet paste-in block at 320 px: a 20x20 patch grid, larger than its 14x14 windows and not a
# multiple of them (padded to 28x28: four windows), so windowed and global blocks both matter
PASTE_DET_SIZE = 320


def _rel(path: str) -> str:
    return osp.relpath(path, ROOT)


def _registry(scope: str):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
    elif scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        raise ValueError(f'unexpected default_scope {scope!r}')
    return MODELS


def _register_toolbox(scope: str) -> None:
    """Import the toolbox's modules into its registries (what a Runner does via the scope)."""
    import importlib
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)


# ------------------------------------------------------------------------------ fake batches
def _det_batch(n: int, size: int, num_classes: int, seed: int = 0):
    """``n`` images of ``size x size`` with two boxes each and a filled-ellipse mask per box."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        boxes = torch.tensor([[8., 10., 70., 60.], [50., 40., 120., 118.]]) * size / 128
        masks = []
        for x1, y1, x2, y2 in boxes.tolist():
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            masks.append((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8))
        sample = DetDataSample(metainfo=dict(img_id=i, img_shape=(size, size),
                                             ori_shape=(size, size), scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.tensor([0, (i + 1) % num_classes]),
            masks=BitmapMasks(np.stack(masks), size, size))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _seg_batch(n: int, size: int, num_classes: int, seed: int = 0):
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        label = torch.randint(0, num_classes, (1, size, size), generator=g)
        label[:, :2] = 255  # a strip of ignored pixels
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _cls_batch(n: int, size: int, num_classes: int, seed: int = 0):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
              for _ in range(n)]
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


# ------------------------------------------------------------------------------ helpers
def _num_classes(cfg) -> int:
    if cfg.default_scope == 'mmdet':
        return cfg.model.roi_head.bbox_head.num_classes
    if cfg.default_scope == 'mmseg':
        return cfg.model.decode_head.num_classes
    return cfg.model.head.num_classes


def _shrink_for_cpu(cfg) -> None:
    """The reductions listed in the module doc; the model's structure stays the config's."""
    cfg.model.backbone.init_cfg = None
    scope = cfg.default_scope
    if scope == 'mmpretrain':  # mmengine's Runner merges the top-level data_preprocessor likewise
        cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    if scope == 'mmdet':
        for aug in cfg.model.data_preprocessor.get('batch_augments') or []:
            if aug.get('type') == 'BatchFixedSizePad':
                aug['size'] = (DET_SIZE, DET_SIZE)
        train_cfg = cfg.model.train_cfg
        train_cfg.rpn_proposal.nms_pre = min(train_cfg.rpn_proposal.nms_pre, 500)
        train_cfg.rpn_proposal.max_per_img = min(train_cfg.rpn_proposal.max_per_img, 100)
        train_cfg.rcnn.sampler.num = min(train_cfg.rcnn.sampler.num, 64)
    if scope == 'mmseg':
        cfg.model.data_preprocessor.size = (SEG_SIZE, SEG_SIZE)
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        wrapper.type = 'OptimWrapper'
        wrapper.pop('loss_scale', None)


LARGE_TEST_WIDTH = 256  # ViT-L runs 24 blocks of width 256 here (16 heads of 16), see below


def _narrow_large(cfg) -> None:
    """ViT-L configs: check that neck / head widths match ViT-L's 1024, then run them narrower.

    The depth (24 blocks, so ``out_indices``, the windowed / global blocks and the 26 layer-decay
    groups stay exactly the config's) is kept; only the width shrinks to ``LARGE_TEST_WIDTH`` (and
    the UperNet head's 1024 channels with it), to keep this file within its CPU time budget.
    """
    from addp_mm.models.backbones import ADDPViT
    backbone = cfg.model.backbone
    if backbone.arch != 'large':
        return
    large = ADDPViT.arch_zoo['large']
    full, w = large['embed_dims'], LARGE_TEST_WIDTH
    scope = cfg.default_scope
    if scope == 'mmdet':
        assert cfg.model.neck.in_channels == full
        cfg.model.neck.in_channels = w
    elif scope == 'mmseg':
        assert cfg.model.neck.embed_dim == full and cfg.model.auxiliary_head.in_channels == full
        assert list(cfg.model.decode_head.in_channels) == [full] * 4
        cfg.model.neck.embed_dim = w
        cfg.model.decode_head.in_channels = [w] * 4
        cfg.model.decode_head.channels = w
        cfg.model.auxiliary_head.in_channels = w
    else:
        assert cfg.model.head.in_channels == full
        if cfg.model.get('neck') and 'input_features' in cfg.model.neck:  # the probe's BN
            assert cfg.model.neck.input_features == full
            cfg.model.neck.input_features = w
        cfg.model.head.in_channels = w
    backbone.arch = dict(embed_dims=w, num_layers=large['num_layers'], num_heads=large['num_heads'],
                         feedforward_channels=4 * w)


def _build(cfg):
    scope = cfg.default_scope
    _register_toolbox(scope)
    with DefaultScope.overwrite_default_scope(scope):
        model = _registry(scope).build(cfg.model)
        model = revert_sync_batchnorm(model)
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return model, optim_wrapper


def _batch(cfg, n: int):
    scope, num_classes = cfg.default_scope, _num_classes(cfg)
    if scope == 'mmdet':
        return _det_batch(n, DET_SIZE, num_classes)
    if scope == 'mmseg':
        return _seg_batch(n, SEG_SIZE, num_classes)
    return _cls_batch(n, CLS_SIZE, num_classes)


def _train_step(model, optim_wrapper, data, step: bool):
    """Preprocess, loss, backward (and an optimizer step); returns the summed loss."""
    model.train()
    batch = model.data_preprocessor(data, True)
    losses = model(**batch, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss), log_vars
    optim_wrapper.backward(loss)
    no_grad = [n for n, p in model.named_parameters()
               if n.startswith('backbone.') and p.requires_grad and p.grad is None]
    # (every trainable backbone parameter gets a gradient: DDP needs no find_unused_parameters)
    assert not no_grad, f'backbone parameters without a gradient: {no_grad}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if step:
        optim_wrapper.step()
    optim_wrapper.zero_grad()
    return loss.item()


def _predict(model, data, scope: str, num_classes: int):
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(data, False)
        results = model(**batch, mode='predict')
    assert len(results) == len(data['inputs'])
    for r in results:
        if scope == 'mmdet':
            assert {'bboxes', 'scores', 'labels', 'masks'} <= set(r.pred_instances.keys())
        elif scope == 'mmseg':
            assert r.pred_sem_seg.data.shape[-2:] == tuple(r.ori_shape)
        else:
            assert r.pred_score.shape == (num_classes, )
    return results


def _check_layer_decay(cfg, optim_wrapper) -> None:
    """One parameter group per (depth, decay) with lr = base lr x rate ** (L - 1 - depth)."""
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    base_lr = cfg.optim_wrapper.optimizer.lr
    groups = optim_wrapper.optimizer.param_groups
    depths = sorted({g['layer_depth'] for g in groups})
    assert depths[0] == 0 and len(depths) >= 3, depths
    top = max(depths)
    for g in groups:
        assert math.isclose(g['lr'], base_lr * rate ** (top - g['layer_depth']), rel_tol=1e-6)


# ------------------------------------------------------------------------------ shipped configs
@pytest.mark.parametrize('path', CONFIGS, ids=[_rel(p) for p in CONFIGS])
def test_config_builds_and_trains_one_step(path):
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == 'ADDPViT'
    assert 'addp_mm' in cfg.custom_imports.imports
    # the scope the model index reads from the files (what it registers with mmpretrain)
    assert config_scope(path) == cfg.default_scope
    is_demo = '/demo/' in path
    if not is_demo:  # the release configs load the released encoder
        assert cfg.model.backbone.init_cfg.type == 'Pretrained'
        assert cfg.model.backbone.init_cfg.checkpoint in ('checkpoints/addp-vit-base-16.pth',
                                                          'checkpoints/addp-vit-large-16.pth')
        assert ('large' in osp.basename(path)) == ('large' in cfg.model.backbone.init_cfg.checkpoint)
    _shrink_for_cpu(cfg)
    _narrow_large(cfg)
    torch.manual_seed(0)
    model, optim_wrapper = _build(cfg)
    if is_demo:
        model.init_weights()
    if 'linear-probe' in path:  # the encoder frozen: only the head (and the BN statistics) learn
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(n.startswith('head.') for n in trainable), trainable
    else:
        _check_layer_decay(cfg, optim_wrapper)
    # two images; one for the release detection configs (LayerNorm only, and the slowest here)
    data = _batch(cfg, 1 if cfg.default_scope == 'mmdet' and not is_demo else 2)
    _train_step(model, optim_wrapper, data, step=is_demo)
    if is_demo:
        _predict(model, data, cfg.default_scope, _num_classes(cfg))


def test_every_task_has_configs():
    names = {d: [osp.basename(p) for p in CONFIGS if f'/configs/{d}/' in p] for d in CONFIG_DIRS}
    for d in ('coco', 'ade20k', 'imagenet'):
        assert any('base' in n for n in names[d]) and any('large' in n for n in names[d]), names[d]
    assert len(names['demo']) >= 3, names['demo']


# ------------------------------------------------------------------------------ paste-in blocks
OWN_CONFIG = osp.join(ROOT, 'docs', 'user_guides', 'own_config.md')
STOCK = {'mmdet': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
         'mmseg': 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
         'mmdet-small': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
         'mmseg-small': 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
         'mmpretrain': 'mmpretrain::vision_transformer/vit-base-p16_32xb128-mae_in1k.py',
         'mmpretrain-small': 'mmpretrain::vision_transformer/vit-base-p16_32xb128-mae_in1k.py'}
# the "your data" blocks: a file whose ``_base_`` line names the file of this model block (the
# stock config + the block), saved under that name next to it
DATA_OF = {'mmdet-data': 'mmdet-small', 'mmseg-data': 'mmseg-small',
           'mmpretrain-data': 'mmpretrain-small'}
NARROW = 64  # the test's ViT width (12 blocks of 64, 4 heads), instead of ViT-B's 768


def readme_block(tag: str) -> str:
    """The python block that follows ``<!-- paste: TAG -->`` in docs/user_guides/own_config.md,
    verbatim."""
    text = open(OWN_CONFIG, encoding='utf-8').read()
    marker = f'<!-- paste: {tag} -->'
    assert text.count(marker) == 1, f'own_config.md must mark exactly one block with {marker}'
    rest = text[text.index(marker) + len(marker):].lstrip('\n')
    assert rest.startswith('```python\n'), f'{marker} must be followed by a ```python block'
    return rest[len('```python\n'):rest.index('\n```', len('```python'))] + '\n'


def _write_pasted(folder, tag: str):
    """The block of ``tag`` in a config file as a user writes it: a model block under its stock
    config's ``_base_`` line; a data block as it stands, next to the file of its model block saved
    under the name its ``_base_`` line gives. Returns the file's path."""
    block, path = readme_block(tag), folder / f'{tag}_addp.py'
    if tag in DATA_OF:
        base = re.match(r"_base_ = '\./([\w.-]+\.py)'\n", block)
        assert base, f'the {tag} block must start with the line _base_ = \'./<model config>.py\''
        _write_pasted(folder, DATA_OF[tag]).rename(folder / base.group(1))
        path.write_text(block)
    else:
        path.write_text(f"_base_ = '{STOCK[tag]}'\n" + block)
    return path


def _paste(tmp_path, tag: str):
    """The block's config file (:func:`_write_pasted`), loaded by mmengine."""
    cfg = Config.fromfile(str(_write_pasted(tmp_path, tag)))
    assert cfg.model.backbone.type == 'ADDPViT' and 'addp_mm' in cfg.custom_imports.imports
    return cfg


def _narrow_pasted(cfg, size: int) -> None:
    """Check the block's widths against its arch, then shrink for the CPU (see the module doc)."""
    from addp_mm.models.backbones import ADDPViT
    bb, scope = cfg.model.backbone, cfg.default_scope
    full = ADDPViT.arch_zoo[bb.arch]
    dims = full['embed_dims']
    if scope == 'mmdet':
        assert cfg.model.neck.in_channels == dims
        cfg.model.neck.in_channels = NARROW
        train_cfg = cfg.model.train_cfg
        train_cfg.rpn_proposal.update(nms_pre=500, max_per_img=100)
        train_cfg.rcnn.sampler.num = 64
        cfg.model.test_cfg.rcnn.max_per_img = 20
    else:
        assert cfg.model.neck.embed_dim == dims and cfg.model.auxiliary_head.in_channels == dims
        assert list(cfg.model.decode_head.in_channels) == [dims] * 4
        cfg.model.neck.embed_dim = NARROW
        cfg.model.decode_head.in_channels = [NARROW] * 4
        cfg.model.auxiliary_head.in_channels = NARROW
        cfg.model.decode_head.channels = NARROW
        cfg.model.data_preprocessor.size = (size, size)
    bb.arch = dict(embed_dims=NARROW, num_layers=full['num_layers'], num_heads=4,
                   feedforward_channels=4 * NARROW)
    bb.img_size = size
    assert bb.init_cfg.type == 'Pretrained'
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'AmpOptimWrapper'  # the recipe trains in mixed precision
    if not torch.cuda.is_available():  # mmengine's AmpOptimWrapper needs a GPU
        wrapper.type = 'OptimWrapper'


def _small_checkpoint(tmp_path, cfg) -> str:
    """An encoder checkpoint (our export format) for the narrowed arch, with random weights."""
    from addp_mm.models.backbones import ADDPViT
    bb = cfg.model.backbone
    torch.manual_seed(1)
    src = ADDPViT(arch=bb.arch, img_size=bb.img_size, with_cls_token=False)
    src.init_weights()
    path = str(tmp_path / 'addp-vit-narrow.pth')
    torch.save(dict(state_dict=src.state_dict()), path)
    return path


def _pasted_model(cfg):
    scope = cfg.default_scope
    _register_toolbox(scope)
    torch.manual_seed(0)
    if cfg.get('data_preprocessor') is not None:  # what mmengine's Runner does with it
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(scope):
        model = revert_sync_batchnorm(_registry(scope).build(cfg.model))
        model.init_weights()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return model, optim_wrapper


def _assert_loaded(model, ckpt: str) -> None:
    """The backbone holds the checkpoint's weights (the toolbox ran our init_cfg)."""
    state = torch.load(ckpt, map_location='cpu')['state_dict']
    for key in ('blocks.0.attn.qkv.weight', 'blocks.11.mlp.fc2.weight', 'patch_embed.proj.weight'):
        assert torch.equal(model.backbone.state_dict()[key], state[key]), key


def _wd_and_lr(optim_wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    wd, lr = {}, {}
    for g in optim_wrapper.optimizer.param_groups:
        for p in g['params']:
            wd[names[id(p)]], lr[names[id(p)]] = g['weight_decay'], g['lr']
    return wd, lr


def test_readme_mmdet_block(tmp_path):
    cfg = _paste(tmp_path, 'mmdet')
    # the ViTDet-B recipe, not the stock SGD
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, tuple(opt.betas), opt.weight_decay) == ('AdamW', 1e-4, (0.9, 0.999), 0.1)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.7
    assert cfg.auto_scale_lr.base_batch_size == 64
    assert cfg.model.roi_head.bbox_head.type == 'Shared2FCBBoxHead'  # the stock heads, untouched
    _narrow_pasted(cfg, PASTE_DET_SIZE)
    ckpt = _small_checkpoint(tmp_path, cfg)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    model, optim_wrapper = _pasted_model(cfg)
    _assert_loaded(model, ckpt)
    grid = PASTE_DET_SIZE // 16
    windows = [b.window_size for b in model.backbone.blocks]
    assert windows == [0 if i in (2, 5, 8, 11) else 14 for i in range(12)]
    assert grid > 14 and grid % 14, grid
    assert isinstance(optim_wrapper.optimizer, torch.optim.AdamW)
    wd, lr = _wd_and_lr(optim_wrapper, model)
    # ViTDet's exemptions (see test_coco_weight_decay_matches_vitdet for the config)
    assert wd['backbone.pos_embed'] == 0 and wd['backbone.blocks.0.norm1.weight'] == 0
    assert wd['backbone.blocks.0.attn.qkv.bias'] == pytest.approx(0.1)
    assert wd['backbone.blocks.0.attn.rel_pos_h'] == pytest.approx(0.1)
    assert lr['backbone.blocks.0.attn.qkv.weight'] == pytest.approx(1e-4 * 0.7 ** 12)
    data = _det_batch(2, PASTE_DET_SIZE, _num_classes(cfg))
    _train_step(model, optim_wrapper, data, step=True)
    _predict(model, data, 'mmdet', _num_classes(cfg))


@pytest.mark.parametrize('tag', ['mmdet', 'mmseg'])
def test_a_neck_of_another_width_is_named_when_built(tmp_path, tag):
    """The paste-in block with another arch but the neck's width left at ViT-B's (768): one error
    naming both keys when the model is built (it failed deep inside a convolution before); the
    neck itself names its key at its first forward (mmdet's own tools build no runner of ours)."""
    from addp_mm.engine.preflight import check_model_widths
    from addp_mm.engine.runner_factory import build_runner
    from addp_mm.errors import UsageError
    cfg = _paste(tmp_path, tag)
    check_model_widths(cfg)  # the block as written fits
    cfg.model.backbone.arch = 'tiny'
    key = 'model.neck.in_channels' if tag == 'mmdet' else 'model.neck.embed_dim'
    with pytest.raises(UsageError, match=rf"{key}=768 does not match the backbone's width: "
                                         r"model.backbone.arch='tiny' gives 192 channels"):
        check_model_widths(cfg)
    cfg.work_dir = str(tmp_path / 'work')
    with pytest.raises(UsageError, match=key):  # what tools/train.py and tools/test.py build
        build_runner(cfg)
    if tag == 'mmdet':
        from addp_mm.models.necks import SimpleFPN
        fpn = SimpleFPN(in_channels=64, out_channels=8, norm_cfg=dict(type='LN2d'))
        with pytest.raises(UsageError, match=r"model.neck.in_channels=64 does not match the "
                                             r"backbone's width: the backbone gives 192 channels"):
            fpn((torch.zeros(1, 192, 4, 4), ))
    else:  # the heads read the pyramid's width too
        cfg.model.backbone.arch = 'base'
        cfg.model.decode_head.in_channels = [768, 768, 384, 768]
        with pytest.raises(UsageError, match=r'model.decode_head.in_channels\[2\]=384'):
            check_model_widths(cfg)


def test_readme_mmseg_block(tmp_path):
    cfg = _paste(tmp_path, 'mmseg')
    assert cfg.model.pretrained is None  # the stock ResNet weights are not handed to ADDPViT
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-4, 0.05)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    # the scheduler fits the stock schedule: warm-up, then linear decay to 0 at its last iteration
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.eta_min) == ('LinearLR', 1500, 'PolyLR', 0.0)
    assert poly.end == cfg.train_cfg.max_iters
    assert cfg.model.decode_head.type == 'UPerHead'
    _narrow_pasted(cfg, SEG_SIZE)
    ckpt = _small_checkpoint(tmp_path, cfg)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    model, optim_wrapper = _pasted_model(cfg)
    _assert_loaded(model, ckpt)
    data = _seg_batch(2, SEG_SIZE, _num_classes(cfg))
    _train_step(model, optim_wrapper, data, step=True)
    _predict(model, data, 'mmseg', _num_classes(cfg))


def _demo_encoder_file(tmp_path, **kw) -> str:
    """A demo pretraining's backbone.pth as runner.export_backbone writes it (backbone.* keys),
    random weights, 64-px position table."""
    from addp_mm.models.backbones import ADDPViT
    torch.manual_seed(1)
    src = ADDPViT(arch='demo', img_size=64, **kw)
    src.init_weights()
    path = str(tmp_path / 'backbone.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in src.state_dict().items()}), path)
    return path


@pytest.mark.parametrize('tag', ['mmdet-small', 'mmseg-small'])
def test_small_paste_blocks_train_on_a_cpu_as_written(tmp_path, tag):
    """The small machine's blocks: the demo encoder from a demo pretraining's backbone.pth (the
    path the block names, written here), full precision, a training step and predictions at
    128 px, no other change."""
    cfg = _paste(tmp_path, tag)
    assert cfg.optim_wrapper.type == 'OptimWrapper' and cfg.model.backbone.arch == 'demo'
    ckpt = cfg.model.backbone.init_cfg.checkpoint
    assert ckpt == 'work_dirs/addp_vit-demo-p16_1xb8-300iter_demo-64px/backbone.pth'
    cfg.model.backbone.init_cfg.checkpoint = _demo_encoder_file(tmp_path)
    scope = cfg.default_scope
    if scope == 'mmdet':
        cfg.model.train_cfg.rpn_proposal.update(nms_pre=500, max_per_img=100)
        cfg.model.train_cfg.rcnn.sampler.num = 64
    else:
        cfg.model.data_preprocessor.size = (128, 128)
    model, optim_wrapper = _pasted_model(cfg)
    state = torch.load(cfg.model.backbone.init_cfg.checkpoint)['state_dict']
    assert torch.equal(model.backbone.blocks[3].mlp.fc2.weight, state['backbone.blocks.3.mlp.fc2.weight'])
    data = (_det_batch if scope == 'mmdet' else _seg_batch)(2, 128, _num_classes(cfg))
    _train_step(model, optim_wrapper, data, step=True)
    _predict(model, data, scope, _num_classes(cfg))


def test_mmpretrain_paste_block(tmp_path):
    """The classifier block under mmpretrain's stock ViT config: the release's pooled features
    into a linear head, the encoder from its init_cfg; narrowed to 64 wide for the CPU."""
    cfg = _paste(tmp_path, 'mmpretrain')
    head = cfg.model.head
    assert (head.type, head.in_channels, head.num_classes) == ('LinearClsHead', 768, 1000)
    assert cfg.model.backbone.out_type == 'avg_featmap' and cfg.model.backbone.arch == 'base'
    cfg.model.backbone.arch = dict(embed_dims=NARROW, num_layers=2, num_heads=4,
                                   feedforward_channels=4 * NARROW)
    cfg.model.head.in_channels = NARROW
    ckpt = str(tmp_path / 'vit.pth')
    from addp_mm.models.backbones import ADDPViT
    torch.save(dict(state_dict=ADDPViT(arch=cfg.model.backbone.arch, img_size=224).state_dict()), ckpt)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    model, optim_wrapper = _pasted_model(cfg)
    data = _cls_batch(2, 224, 1000)
    _train_step(model, optim_wrapper, data, step=True)
    _predict(model, data, 'mmpretrain', 1000)


# tag: (the demo folders its datasets must read: images of the train / val split, classes),
# the --cfg-options that shorten the run to a few iterations (evaluated and saved at its end), the
# metric of the evaluation
DATA_RUNS = {
    'mmdet-data': ((None, 4, ('circle', 'square', 'triangle', 'star')),
                   ['train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1',
                    'model.train_cfg.rcnn.sampler.num=32'], 'coco/segm_mAP'),
    'mmseg-data': ((8, 4, ('background', 'circle', 'square', 'triangle', 'star')),
                   ['train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=3'], 'mIoU'),
    'mmpretrain-data': ((16, 20, ('circle', 'square', 'star', 'triangle')),
                        ['train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1',
                         'train_dataloader.batch_size=8'], 'accuracy/top1'),
}


@pytest.mark.parametrize('tag', list(DATA_RUNS))
def test_data_blocks_train_and_evaluate_on_the_demo_data(demo_cwd, tmp_path, tag):
    """A small model block + its "your data" block, as written, read the demo data's folders (its
    images, its classes), train with tools/train.py, evaluate on the val split at the end and save
    a checkpoint. Changed for the test: the schedule's length (a few iterations), the data loaded
    in the test's process (no worker processes: their shutdown alone takes seconds), the encoder
    file the model block names (a demo pretraining's backbone.pth, written here), and for the
    detector 32 sampled RoIs per image instead of 128 (the stock 256-wide mask head on up to a
    quarter of them is most of a step's time)."""
    (n_train, n_val, classes), shorten, metric = DATA_RUNS[tag]
    path = _write_pasted(tmp_path, tag)
    cfg = Config.fromfile(str(path))
    scope = cfg.default_scope
    _register_toolbox(scope)
    from importlib import import_module
    datasets = import_module(f'{scope}.registry').DATASETS
    here = os.getcwd()
    os.chdir(demo_cwd)
    try:
        with DefaultScope.overwrite_default_scope(scope):
            train = datasets.build(cfg.train_dataloader.dataset)
            val = datasets.build(cfg.val_dataloader.dataset)
    finally:
        os.chdir(here)
    assert tuple(train.metainfo['classes']) == tuple(val.metainfo['classes']) == classes
    assert n_train is None or len(train) == n_train
    assert len(train) > 0 and len(val) == n_val
    assert val.get_data_info(0)['img_path'].startswith('data/demo/')
    options = shorten + [f'model.backbone.init_cfg.checkpoint={_demo_encoder_file(tmp_path)}'] + [
        f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader')
        for key in ('num_workers=0', 'persistent_workers=False')]
    work = tmp_path / 'work'
    os.chdir(demo_cwd)
    try:  # (the runner's default scope is dropped afterwards, for the tests after this one)
        with DefaultScope.overwrite_default_scope(scope):
            tool('train').main([str(path), '--work-dir', str(work), '--cfg-options', *options])
    finally:
        os.chdir(here)
    assert len(glob.glob(str(work / '*.pth'))) == 1
    scalars, = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    logged = [json.loads(line) for line in open(scalars)]
    assert logged[0].get('loss') is not None and math.isfinite(logged[0]['loss']), logged[0]
    metrics = logged[-1]  # the evaluation at the end of training
    assert metric in metrics and 0 <= metrics[metric] <= 100, metrics
    if scope == 'mmpretrain':  # over the 20 val images: a multiple of 5 %
        assert metrics[metric] % 5 == pytest.approx(0, abs=1e-4), metrics


def test_mmseg_pretrained_alias(tmp_path):
    """mmseg's way: model.pretrained=PATH reaches ADDPViT as its deprecated ``pretrained``."""
    cfg = _paste(tmp_path, 'mmseg')
    _narrow_pasted(cfg, SEG_SIZE)
    ckpt = _small_checkpoint(tmp_path, cfg)
    cfg.model.backbone.init_cfg = None
    cfg.model.pretrained = ckpt
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model, _ = _pasted_model(cfg)
    _assert_loaded(model, ckpt)
    # the stock config's ResNet URL left in place next to the block's init_cfg: a clear error
    cfg = _paste(tmp_path, 'mmseg')
    cfg.model.pretrained = 'open-mmlab://resnet50_v1c'
    _narrow_pasted(cfg, SEG_SIZE)
    with pytest.raises(ValueError, match='model.pretrained=None'):
        _pasted_model(cfg)


# ------------------------------------------------------------------------------ RoI features
@pytest.mark.parametrize('path', [p for p in CONFIGS if '/coco/' in p or 'mask-rcnn' in p],
                         ids=lambda p: _rel(p))
def test_detection_features_are_contiguous(path):
    """mmcv's RoIAlign (CPU and CUDA kernels) reads its input as contiguous NCHW memory whatever the
    strides, so a channels-last view (e.g. the output of a permute-based LayerNorm2d) silently gives
    wrong RoI features: the box/mask heads then cannot learn (found on the demo: RoI classifier
    stuck at 'background'). The pyramid handed to the RoI heads must be contiguous."""
    cfg = Config.fromfile(path)
    _register_toolbox(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        neck = _registry(cfg.default_scope).build(cfg.model.neck).eval()
    with torch.no_grad():  # a backbone-like (channels-last strided) stride-16 map
        x = torch.randn(1, 8, 8, cfg.model.neck.in_channels).permute(0, 3, 1, 2)
        feats = neck((x, ))
    bad = [i for i, f in enumerate(feats) if not f.is_contiguous()]
    assert not bad, (
        f'pyramid levels {bad} are not contiguous (strides {[feats[i].stride() for i in bad]}) '
        'and mmcv RoIAlign ignores strides')
