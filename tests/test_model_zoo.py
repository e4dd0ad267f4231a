"""The model zoo as the toolboxes' and timm's users reach it: the model index (every config in a
metafile, named after its file with ``addp`` in the name), mmpretrain's ``list_models`` /
``get_model`` / ``inference_model`` on our names (every mmpretrain-scope model of every metafile,
none of the others), and the encoders as timm models loading the released file through our
converter (the same features as ``ADDPViT``)."""
import glob
import os.path as osp
import re

import numpy as np
import pytest
import torch
import yaml

from addp_mm.checkpoint import CheckpointMismatchError
from addp_mm.model_index import config_scope
from addp_mm.models.backbones import ADDPViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(embed_dim=64, depth=2, num_heads=4)  # the reference files' encoder
TINY_ARCH = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256)


def index_models():
    """Every model entry of every metafile that model-index.yml imports."""
    index = yaml.safe_load(open(osp.join(ROOT, 'model-index.yml')))
    return [model for rel in index['Import']
            for model in yaml.safe_load(open(osp.join(ROOT, rel)))['Models']]


def test_model_index_lists_every_config_by_its_name():
    index = yaml.safe_load(open(osp.join(ROOT, 'model-index.yml')))
    listed = {}
    for rel in index['Import']:
        meta = yaml.safe_load(open(osp.join(ROOT, rel)))
        folder = osp.dirname(rel)
        assert osp.isfile(osp.join(ROOT, folder, 'README.md')), folder
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            config = model['Config']
            assert osp.isfile(osp.join(ROOT, config)), config
            assert osp.dirname(config) == folder, config
            # the config's file name, with the ADDP recipe after the batch field where the file
            # name does not say addp (as mmpretrain's vit-base-p16_32xb128-mae_in1k)
            stem = osp.splitext(osp.basename(config))[0]
            assert model['Name'] == (stem if 'addp' in stem else
                                     re.sub(r'_(\d+xb\d+)-', r'_\1-addp-', stem, count=1))
            assert 'addp' in model['Name']
            assert model['In Collection'] in collections
            assert model.get('Weights') is None  # nothing is downloaded
            listed[config] = model
    configs = {osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
               if '/_base_/' not in p}
    assert configs == set(listed), configs ^ set(listed)


def test_mmpretrain_lists_every_mmpretrain_scope_model_of_the_index():
    """``list_models('*addp*')``: exactly the models of every metafile whose config builds in
    mmpretrain's scope (the demo metafile's detector and segmenter are left out); the scope is
    read from the files as Config.fromfile resolves it (checked here for the configs outside
    test_configs.py's folders, which checks the others)."""
    import mmpretrain
    from mmengine.config import Config
    models = index_models()
    scopes = {}
    for m in models:
        path = osp.join(ROOT, m['Config'])
        scopes[m['Name']] = config_scope(path)
        if m['Config'].split('/')[1] in ('pretrain', 'toy', 'generation'):
            assert scopes[m['Name']] == Config.fromfile(path).get('default_scope'), m['Config']
    expected = {n for n, s in scopes.items() if s == 'mmpretrain'}
    assert set(mmpretrain.list_models('*addp*')) == expected
    assert len(expected) >= 13 and 'vit-demo-p16_1xb32-addp-30e_demo-in1k-128px' in expected
    assert {s for s in scopes.values()} == {'mmpretrain', 'mmdet', 'mmseg', None}
    # the demo classifier by its name: the config's model, 4 classes, in eval mode
    from mmengine.registry import DefaultScope
    model = mmpretrain.get_model('vit-demo-p16_1xb32-addp-30e_demo-in1k-128px')
    assert type(model).__name__ == 'ImageClassifier' and not model.training
    assert model.backbone.embed_dims == 64 and model.head.num_classes == 4
    assert model._config.filename == osp.join(
        ROOT, 'configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py')
    # (mmpretrain's inferencer builds its pipeline in the current scope, which a toolbox's runner
    # or inferencer run before in this process may have left at its own)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        out = mmpretrain.inference_model('vit-demo-p16_1xb32-addp-30e_demo-in1k-128px',
                                         np.full((100, 140, 3), 90, np.uint8))
    assert out['pred_scores'].shape == (4, ) and 0 <= out['pred_label'] < 4


def test_mmpretrain_lists_gets_and_infers_our_models(reference_dir, tmp_path):
    import mmpretrain
    from verification.backbone import normalise
    from verification.core import ReferenceDir
    import convert_checkpoint
    names = mmpretrain.list_models('*addp*')
    assert {'addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px',
            'vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px',
            'vit-large-p16_addp-pre_8xb128-coslr-50e_in1k-256px'} <= set(names)
    # mmpretrain's own stay listed beside ours
    assert 'mae_vit-base-p16_8xb512-amp-coslr-300e_in1k' in mmpretrain.list_models('mae*')
    # inference_model by name: the config's test pipeline, a score per class of the config
    out = mmpretrain.inference_model('vit-demo-p4_1xb32-addp-60e_digits-10pct-32px',
                                     np.full((40, 30, 3), 128, np.uint8))
    assert out['pred_scores'].shape == (10, ) and 0 <= out['pred_label'] < 10
    assert abs(float(out['pred_scores'].sum()) - 1) < 1e-5
    # get_model(NAME, pretrained=FILE): the released fine-tuning classifier, converted to the
    # toolbox's key names, gives the release's logits (the ViT-B config at the reference's size)
    ref = ReferenceDir(reference_dir)
    converted = str(tmp_path / 'ft.pth')
    convert_checkpoint.main([ref.file('finetune'), converted])
    model = mmpretrain.get_model(
        'vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px', pretrained=converted,
        backbone=dict(arch=dict(_delete_=True, **TINY_ARCH)), head=dict(num_classes=10, in_channels=64))
    with torch.no_grad():
        logits = model(normalise(ref.vectors['img']), mode='tensor')
    assert torch.allclose(logits, ref.vectors['ft_logits'], atol=1e-4)
    # and inference_model on that model (its metainfo says the task)
    out = mmpretrain.inference_model(model, np.full((256, 256, 3), 100, np.uint8))
    assert out['pred_scores'].shape == (10, )


def addp_vit(file, **kw):
    kw.setdefault('out_type', 'raw')
    vit = ADDPViT(arch=TINY_ARCH, img_size=kw.pop('img_size', 256), final_norm=False,
                  init_cfg=dict(type='Pretrained', checkpoint=file), **kw)
    vit.init_weights()
    return vit.eval()


@pytest.mark.parametrize('pre_norm, img_size, hw, dynamic', [
    (False, 256, (256, 256), False), (True, 256, (256, 256), False), (False, 128, (128, 128), False),
    (False, 256, (224, 320), True)])
def test_timm_model_loads_the_release_file_as_addp_vit(reference_dir, pre_norm, img_size, hw,
                                                       dynamic):
    """At the file's size, made at another (the table resized on load) and, with
    ``dynamic_img_size``, an input of another size (the table resized per input)."""
    import timm
    assert set(timm.list_models('*addp*')) == {'addp_vit_base_patch16_256', 'addp_vit_large_patch16_256'}
    file = osp.join(reference_dir, 'official_addp_public.pth')
    kw = dict(pretrained=True, pretrained_cfg_overlay=dict(file=file), pre_norm=pre_norm,
              img_size=img_size, dynamic_img_size=dynamic, **TINY)
    model = timm.create_model('addp_vit_base_patch16_256', **kw).eval()
    assert model.num_classes == 0  # the released file is an encoder
    ours = addp_vit(file, pre_norm=pre_norm, img_size=img_size)
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), ours(x)[-1], rtol=1e-5, atol=1e-5)
        # timm's features_only: the blocks' maps, as ADDPViT's featmaps
        feats = timm.create_model('addp_vit_base_patch16_256', features_only=True,
                                  out_indices=(0, 1), **kw).eval()(x)
        maps = addp_vit(file, pre_norm=pre_norm, img_size=img_size, out_indices=(0, 1),
                        out_type='featmap')(x)
    for a, b in zip(feats, maps):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    data = timm.data.resolve_data_config({}, model=model)
    assert data['input_size'] == (3, 256, 256) and data['interpolation'] == 'bicubic'
    assert data['mean'] == (0.485, 0.456, 0.406) and data['crop_pct'] == 1.0


def test_timm_model_refuses_a_file_of_another_size(reference_dir):
    import timm
    file = osp.join(reference_dir, 'official_addp_public.pth')
    with pytest.raises(CheckpointMismatchError, match='official_addp_public.pth'):
        timm.create_model('addp_vit_base_patch16_256', pretrained=True, embed_dim=32, depth=2,
                          num_heads=4, pretrained_cfg_overlay=dict(file=file))
