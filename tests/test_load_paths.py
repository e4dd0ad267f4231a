"""Every load path converts and resizes, or refuses naming what is missing:
``tools/test.py CHECKPOINT``, ``load_from`` and ``--resume`` go through the same converters as
``init_cfg``; a checkpoint that fits nothing (or too little) is an error, not a warning."""
import importlib.util
import os.path as osp
import pickle
import re

import pytest
import torch

from tiny_classifier import make_class_folders, tiny_classifier_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(name):
    """``tools/<name>.py`` as a module (``test`` would otherwise be the standard library's)."""
    spec = importlib.util.spec_from_file_location(f'addp_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FINETUNE_CONFIG = '''
default_scope = 'mmpretrain'
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes={num_classes}, mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='ADDPViT', arch=dict(embed_dims={dim}, num_layers={depth}, num_heads={heads},
                  feedforward_channels={ffn}), img_size={img}, patch_size={patch},
                  out_type='avg_featmap', final_norm=False),
    head=dict(type='LinearClsHead', num_classes={num_classes}, in_channels={dim}))
test_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=r'{data}', ann_file='ann.txt', data_prefix='',
                 metainfo=dict(classes=[str(i) for i in range({num_classes})]),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
'''


@pytest.fixture(scope='module')
def finetune_setup(reference_dir, tmp_path_factory):
    """The released fine-tuning file's config (an mmpretrain classifier of its dimensions) and
    two images (the reference inputs as 8-bit PNGs)."""
    from PIL import Image
    from verification.core import ReferenceDir
    ref = ReferenceDir(reference_dir)
    cfg = ref.config
    tmp = tmp_path_factory.mktemp('ft')
    pixels = (ref.vectors['img'].clamp(0, 1) * 255).round().to(torch.uint8)
    lines = []
    for i, img in enumerate(pixels):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp / f'{i}.png')
        lines.append(f'{i}.png {i}')
    (tmp / 'ann.txt').write_text('\n'.join(lines) + '\n')
    config = tmp / 'ft_cls.py'
    config.write_text(FINETUNE_CONFIG.format(
        num_classes=cfg['num_classes'], dim=cfg['embed_dim'], depth=cfg['depth'], heads=cfg['num_heads'],
        ffn=int(cfg['embed_dim'] * cfg['mlp_ratio']), img=cfg['img_size'], patch=cfg['patch_size'],
        data=str(tmp)))
    return ref, tmp, config, pixels


def converter_logits(ref, pixels):
    """Logits of the released fine-tuning file through the verified converter path (strict
    load of ``finetune_classifier_state_dict``; ``verify_reference.py`` checks it reproduces the
    release's ``ft_logits``) on the same 8-bit pixels."""
    from addp_mm.checkpoint import finetune_classifier_state_dict, read_checkpoint, unwrap_state_dict
    from verification.backbone import build_finetune_classifier, normalise
    model = build_finetune_classifier(ref).eval()
    model.load_state_dict(finetune_classifier_state_dict(unwrap_state_dict(
        read_checkpoint(ref.file('finetune')))), strict=True)
    with torch.no_grad():
        return model(normalise(pixels.float() / 255), mode='tensor'), model


def test_released_finetune_file_through_tools_test_gives_release_logits(finetune_setup, tmp_path):
    """tools/test.py CONFIG official_finetune_*.pth: the released file is converted, all of the
    classifier is loaded, the predictions equal the converter path's (relative 1e-4); before the
    fix mmengine's non-strict loader loaded nothing and scored a random model."""
    ref, data, config, pixels = finetune_setup
    logits, reference_model = converter_logits(ref, pixels)
    out = tmp_path / 'preds.pkl'
    tool = load_tool('test')
    tool.main([str(config), ref.file('finetune'), '--work-dir', str(tmp_path / 'work'), '--out', str(out)])
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    scores = torch.stack([torch.as_tensor(p['pred_score']) for p in preds])
    expected = logits.softmax(-1)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-7)
    # and the same backbone weights as the init_cfg path reads from the same file
    from mmengine.registry import MODELS
    from verification.backbone import encoder_arch
    cfg = ref.config
    backbone = MODELS.build(dict(type='ADDPViT', arch=encoder_arch(cfg), img_size=cfg['img_size'],
                                 patch_size=cfg['patch_size'], out_type='avg_featmap', final_norm=False,
                                 init_cfg=dict(type='Pretrained', checkpoint=ref.file('finetune'))))
    backbone.init_weights()
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(v, reference_model.backbone.state_dict()[k], rtol=0, atol=0)


def test_load_from_resizes_and_resume_refuses_a_release_file(finetune_setup, tmp_path):
    """load_from (training init) with the released file at half the image size: converted and the
    position table resized; --resume of it names the missing training state."""
    from mmengine.config import Config
    from addp_mm.engine.runner_factory import build_runner
    from addp_mm.checkpoint import CheckpointMismatchError
    ref, data, config, pixels = finetune_setup
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.img_size = ref.config['img_size'] // 2
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = ref.file('finetune')
    runner = build_runner(cfg)
    runner.load_or_resume()
    _, reference_model = converter_logits(ref, pixels)
    model = runner.model
    grid = (ref.config['img_size'] // 2 // ref.config['patch_size']) ** 2
    assert model.backbone.pos_embed.shape[1] == 1 + grid
    torch.testing.assert_close(model.head.fc.weight, reference_model.head.fc.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.blocks[1].attn.qkv.weight,
                               reference_model.backbone.blocks[1].attn.qkv.weight, rtol=0, atol=0)
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(tmp_path / 'work2')
    runner = build_runner(cfg)
    with pytest.raises(CheckpointMismatchError, match=r"--resume .*official_finetune.*not a training checkpoint.*'meta'"):
        runner.resume(ref.file('finetune'))


TINY_REST = '''
train_cfg = dict(by_epoch=True, max_epochs=1)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
test_dataloader = dict(batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=train_dataloader['dataset'])
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
'''


def _foreign_checkpoints(tmp_path):
    """A ResNet-like state dict (no key fits) and a wider ViT (every key fits, no shape does)."""
    resnet = {'conv1.weight': torch.randn(8, 3, 7, 7), 'bn1.weight': torch.ones(8),
              'layer1.0.conv1.weight': torch.randn(8, 8, 3, 3), 'fc.weight': torch.randn(2, 8)}
    torch.save({'state_dict': resnet}, tmp_path / 'resnet.pth')
    # a few names in common (a 2-class head of width 32) but mostly another network
    torch.save({'state_dict': {**resnet, 'head.fc.weight': torch.zeros(2, 32), 'head.fc.bias': torch.zeros(2)}},
               tmp_path / 'resnet_head.pth')
    from mmengine.registry import MODELS
    vit = MODELS.build(dict(type='ADDPViT', arch=dict(embed_dims=48, num_layers=2, num_heads=2,
                                                      feedforward_channels=96), img_size=32, patch_size=8))
    torch.save({'model': vit.state_dict()}, tmp_path / 'vit48.pth')
    return tmp_path / 'resnet.pth', tmp_path / 'resnet_head.pth', tmp_path / 'vit48.pth'


@pytest.mark.parametrize('path', ['test', 'load_from'])
def test_checkpoint_that_fits_nothing_is_an_error(tmp_path, path):
    """A ResNet's state dict (also one sharing a head's names with the model) or a ViT of other
    width given to tools/test.py or as load_from: an error naming the file and the keys (missing /
    unexpected / shape-mismatched)."""
    from mmengine.config import Config
    from addp_mm.engine.runner_factory import build_runner
    from addp_mm.checkpoint import CheckpointMismatchError
    data = tmp_path / 'data'
    make_class_folders(str(data), n=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_classifier_config(str(data), TINY_REST))
    resnet, resnet_head, vit48 = _foreign_checkpoints(tmp_path)
    for ckpt, pattern in ((resnet_head, r"resnet_head\.pth.*only 2 of its 6 tensors fit the model.*"
                                        r"unexpected keys 4: conv1\.weight"),
                          (resnet, r"resnet\.pth.*no tensor of it fits \(0 of the model's \d+\).*missing keys \d+: "
                                   r"backbone\..*unexpected keys 4: conv1\.weight"),
                          (vit48, r"vit48\.pth.*shape-mismatched keys \d+: backbone\.\S+ "
                                  r"\([^)]*48[^)]*\) in the file vs \([^)]*32[^)]*\) in the model")):
        cfg = Config.fromfile(str(config))
        cfg.work_dir = str(tmp_path / 'work')
        cfg.load_from = str(ckpt)
        runner = build_runner(cfg)
        with pytest.raises(CheckpointMismatchError, match=pattern):
            runner.test() if path == 'test' else runner.load_or_resume()


def test_test_tool_refuses_a_backbone_only_file(tmp_path):
    """tools/test.py with an encoder-only file (backbone.pth, a converted backbone): the head
    would stay random, so it is an error naming the head's keys; load_from for training accepts it
    (the head is what training learns) and logs what it left initialised."""
    from mmengine.config import Config
    from mmengine.registry import MODELS
    from addp_mm.engine.runner_factory import build_runner
    from addp_mm.checkpoint import CheckpointMismatchError
    data = tmp_path / 'data'
    make_class_folders(str(data), n=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_classifier_config(str(data), TINY_REST))
    cfg = Config.fromfile(str(config))
    backbone = MODELS.build(cfg.model.backbone)
    torch.save({'state_dict': backbone.state_dict()}, tmp_path / 'backbone.pth')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_from = str(tmp_path / 'backbone.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        build_runner(cfg.copy()).test()
    # the advice first, the keys summarised after it (a line of about 400 characters, not 900)
    message = str(info.value)
    assert re.match(r"CHECKPOINT = \S+backbone\.pth: this is a backbone-only file \(encoder "
                    r"weights\), not a checkpoint of this model; give the checkpoint a training of "
                    r"this config wrote .*to fine-tune from this file: tools/train.py CONFIG "
                    r"--pretrained FILE \(it does not hold every tensor the model needs: missing "
                    r"head\.\* \(2\); unexpected none\)$", message), message
    assert len(message) - len(str(tmp_path)) < 450
    runner = build_runner(cfg.copy())
    runner.load_or_resume()  # training init: loads the encoder
    for k, v in backbone.state_dict().items():
        torch.testing.assert_close(runner.model.backbone.state_dict()[k], v, rtol=0, atol=0)


def test_every_load_path_takes_what_init_cfg_takes(reference_dir, tmp_path):
    """mmengine's own ``load_checkpoint`` (what scripts and the toolboxes' ``init_model`` /
    ``get_model`` call) gives ``ADDPViT`` the weights its ``init_cfg`` gives: the released
    pretraining file into the encoder (release names converted), and a pretraining's
    ``backbone.pth`` into the encoder and into a whole classifier, no silent partial load."""
    import os.path as osp

    from mmengine.runner import load_checkpoint
    from mmengine.registry import MODELS

    from verification.backbone import encoder_arch
    from verification.core import ReferenceDir
    ref = ReferenceDir(reference_dir)
    arch = encoder_arch(ref.config)
    release = osp.join(reference_dir, 'official_addp_public.pth')
    kw = dict(arch=arch, img_size=256, pre_norm=True, out_type='raw')
    by_init_cfg = MODELS.build(dict(type='ADDPViT', **kw,
                                    init_cfg=dict(type='Pretrained', checkpoint=release)))
    by_init_cfg.init_weights()
    torch.manual_seed(1)
    by_mmengine = MODELS.build(dict(type='ADDPViT', **kw))
    by_mmengine.init_weights()
    load_checkpoint(by_mmengine, release, map_location='cpu')
    for k, v in by_init_cfg.state_dict().items():
        assert torch.equal(by_mmengine.state_dict()[k], v), k
    # a pretraining's backbone.pth (its keys named as in a whole model, backbone.*) for the
    # encoder alone and for a whole classifier
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in by_init_cfg.state_dict().items()}},
               tmp_path / 'backbone.pth')
    alone = MODELS.build(dict(type='ADDPViT', **kw))
    load_checkpoint(alone, str(tmp_path / 'backbone.pth'), map_location='cpu', strict=True)
    assert all(torch.equal(alone.state_dict()[k], v) for k, v in by_init_cfg.state_dict().items())
    data = tmp_path / 'data'
    make_class_folders(str(data), n=1)
    from mmengine.config import Config
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_classifier_config(str(data), TINY_REST))
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.update(arch=arch, img_size=256, patch_size=16, pre_norm=True)
    cfg.model.head.in_channels = arch['embed_dims']
    from test_configs import _build
    classifier, _ = _build(cfg)
    load_checkpoint(classifier, str(tmp_path / 'backbone.pth'), map_location='cpu')
    own = classifier.backbone.state_dict()
    shared = [k for k in by_init_cfg.state_dict() if k in own]
    assert len(shared) >= len(own) - 2  # all but the classifier's fc_norm
    assert all(torch.equal(own[k], by_init_cfg.state_dict()[k]) for k in shared)
