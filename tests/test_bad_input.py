"""Bad input: empty / malformed COCO annotation files, images smaller
than the crop, image sizes that are not multiples of the patch or the window."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_COCO = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py')


@pytest.mark.parametrize('content, pattern', [
    (b'', r'is empty \(0 bytes\)'),
    (b'{"images": [', r'is not valid JSON \(Expecting value: line 1 column 13'),
    (b'[1, 2]', r'holds a JSON list, not an object'),
    (json.dumps({'annotations': [], 'categories': []}).encode(), r"has no \['images'\]"),
])
def test_bad_coco_annotation_file_names_itself(tmp_path, content, pattern):
    """tools/train.py's data check (check_data): the config key and the file named, not a
    traceback from pycocotools; a good file passes."""
    from addp_mm.engine.preflight import check_data
    from addp_mm.errors import UsageError
    root = tmp_path / 'coco'
    for sub in ('train2017', 'val2017', 'annotations'):
        (root / sub).mkdir(parents=True)
    good = {'images': [], 'annotations': [], 'categories': [{'id': 1, 'name': 'circle'}]}
    (root / 'annotations' / 'instances_val2017.json').write_text(json.dumps(good))
    (root / 'annotations' / 'instances_train2017.json').write_bytes(content)
    cfg = Config.fromfile(DEMO_COCO, lazy_import=False)
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = cfg[loader].dataset
        while 'dataset' in dataset:  # wrappers (RepeatDataset, ...)
            dataset = dataset.dataset
        dataset.data_root = str(root) + '/'
    check_data(cfg, ['val_dataloader'])
    with pytest.raises(UsageError, match=pattern) as e:
        check_data(cfg, ['train_dataloader', 'val_dataloader'])
    assert 'train_dataloader.dataset' in str(e.value) and '.ann_file' in str(e.value)
    assert 'instances_train2017.json' in str(e.value)


@pytest.mark.parametrize('config, pipeline', [
    ('pretrain/addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py', 'train_pipeline'),
    ('imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py', 'train_pipeline'),
    ('imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py', 'test_pipeline'),
])
def test_images_smaller_than_the_crop_are_upsampled(tmp_path, config, pipeline):
    """A 20x13 image through the pretraining crop and the fine-tuning train / eval pipelines:
    upsampled to the 256-px input (the crop or resize scales up), not an error or a small tensor."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from PIL import Image
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    path = tmp_path / 'small.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (13, 20, 3), dtype=np.uint8)).save(path)
    steps = [dict(t) for t in cfg[pipeline]]
    out = Compose(steps)(dict(img_path=str(path)))
    assert tuple(out['inputs'].shape) == (3, 256, 256)


def _vit(**kw):
    from addp_mm.models.backbones import ADDPViT
    torch.manual_seed(0)
    m = ADDPViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64), img_size=64,
                patch_size=16, out_type='featmap', **kw)
    m.init_weights()
    return m.eval()


def test_size_not_a_multiple_of_the_patch_is_padded():
    """A 70x50 input (patch 16): padded at the bottom / right to 80x64, the same features as the
    explicitly zero-padded image, on a 5x4 grid."""
    m = _vit()
    x = torch.randn(1, 3, 70, 50)
    with torch.no_grad():
        out = m(x)[0]
        padded = m(torch.nn.functional.pad(x, (0, 14, 0, 10)))[0]
    assert out.shape == (1, 32, 5, 4)
    torch.testing.assert_close(out, padded, rtol=0, atol=0)


def test_grid_not_a_multiple_of_the_window_is_padded():
    """Window attention (window 3) on a 5x4 patch grid: padded to 6x6 inside the attention (as
    ViTDet) and cropped back to 5x4; each window's numbers are checked against the definition in
    tests/test_window_attention.py. A 70x50 image needs both paddings (patch, then window)."""
    m = _vit(with_cls_token=False, window_size=3, window_block_indexes=[0, 1], use_rel_pos=True)
    x = torch.randn(1, 3, 70, 50)
    with torch.no_grad():
        out = m(x)[0]
        padded = m(torch.nn.functional.pad(x, (0, 14, 0, 10)))[0]
    assert out.shape == (1, 32, 5, 4) and torch.isfinite(out).all()
    torch.testing.assert_close(out, padded, rtol=0, atol=0)


@pytest.mark.parametrize('registry, cfg, pattern', [
    ('MODELS', dict(type='ADDPViT', arch='huge'), r"arch 'huge' is not one of"),
    ('MODELS', dict(type='ADDPViT', arch='demo', out_indices='last'), r'out_indices must be'),
    ('MODELS', dict(type='ADDPViT', arch='demo', img_size=(1, 2, 3)), r'img_size'),
    ('MODELS', dict(type='ADDPViT', arch='demo', window_size=4), r'with_cls_token=False'),
    ('MODELS', dict(type='VQGANTokenizer', ch=48), r'multiple of 32'),
    ('MODELS', dict(type='VQGANTokenizer', ch=32, precision='half'), r"precision='half'"),
    ('MODELS', dict(type='SimpleFPN', in_channels=64, scale_factors=(3.0, )), r'scale factor 3.0'),
    ('TASK_UTILS', dict(type='MaskSchedule', min_ratio=0.9, max_ratio=0.5), r'min_ratio < max_ratio'),
    ('TASK_UTILS', dict(type='ADDPSampler', schedule='square'), r"schedule='square'"),
    ('OPTIM_WRAPPERS', dict(type='NonFiniteGuardOptimWrapper', max_consecutive_skips=-1,
                            optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)),
     r'max_consecutive_skips'),
])
def test_a_config_mistake_in_a_constructor_is_a_usage_error(registry, cfg, pattern):
    """What a config sets wrong is a UsageError (one line in the tools), also through mmengine's
    builder (which re-raises the same type with the class named), not a ValueError / KeyError /
    TypeError traceback."""
    import mmengine.registry as registries

    from addp_mm.errors import UsageError
    with pytest.raises(UsageError, match=pattern):
        getattr(registries, registry).build(cfg)
