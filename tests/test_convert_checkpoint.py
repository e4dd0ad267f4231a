"""tools/convert_checkpoint.py: release / our checkpoints -> files that load_from, tools/test.py
and init_cfg load directly."""
import os.path as osp

import pytest
import torch
from conftest import run_command, tool_in_process

from addp_mm.models.backbones import ADDPViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def convert(src, dst):
    return run_command(['python', osp.join(ROOT, 'tools', 'convert_checkpoint.py'), str(src), str(dst)],
                       check=False)


def test_convert_release_checkpoint(reference_dir, tmp_path):
    src = osp.join(reference_dir, 'official_addp_public.pth')
    dst = tmp_path / 'out' / 'backbone.pth'
    proc = convert(src, dst)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(dst, weights_only=True)
    keys = set(ckpt['state_dict'])
    assert 'backbone.pre_norm.weight' in keys and 'backbone.blocks.1.attn.qkv.weight' in keys
    assert all(k.startswith('backbone.') for k in keys) and ckpt['meta']['parts'] == ['backbone']
    arch = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256)
    a = ADDPViT(arch=arch, pre_norm=True, out_type='raw', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    b = ADDPViT(arch=arch, pre_norm=True, out_type='raw', init_cfg=dict(type='Pretrained', checkpoint=src))
    a.init_weights()
    b.init_weights()
    x = torch.randn(1, 3, 256, 256)
    assert torch.equal(a.eval()(x)[0], b.eval()(x)[0])


def test_convert_bad_inputs(tmp_path):
    """Each a user's mistake (in this process; how the tool prints one: tests/test_tools_ux.py)."""
    from cli import is_user_mistake
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(2, 2)}}, tmp_path / 'nohead.pth')
    for src, dst, says in (('missing.pth', 'x.pth', 'missing.pth'),
                           ('nohead.pth', 'y.pth', 'no ADDP encoder weights')):
        with pytest.raises(Exception, match=says) as e:
            tool_in_process('convert_checkpoint', [tmp_path / src, tmp_path / dst], tmp_path)
        assert is_user_mistake(e.value), repr(e.value)
        assert not osp.exists(tmp_path / dst)


def test_converted_files_load_with_load_from(reference_dir, tmp_path):
    """The released fine-tuning classifier, converted, is an mmpretrain ImageClassifier checkpoint
    (what tools/test.py's load_from reads): strict load, the release's logits; at another image
    size the position table is resized on load. The pretraining file with --keep-decoder loads
    into the ADDP model."""
    from mmengine.registry import MODELS
    from mmengine.runner import load_checkpoint
    from verification.backbone import build_finetune_classifier, normalise
    from verification.core import ReferenceDir
    from verification.pretrain import addp_model_cfg
    import convert_checkpoint as tool  # tools/, in this process
    ref = ReferenceDir(reference_dir)
    dst = tmp_path / 'ft.pth'
    tool.main([ref.file('finetune'), str(dst)])
    model = build_finetune_classifier(ref).eval()
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    with torch.no_grad():
        logits = model(normalise(ref.vectors['img']), mode='tensor')
    assert torch.allclose(logits, ref.vectors['ft_logits'], atol=1e-4)
    cfg = ref.config
    small = MODELS.build(dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='ADDPViT', arch=dict(embed_dims=cfg['embed_dim'], num_layers=cfg['depth'],
                                                num_heads=cfg['num_heads'],
                                                feedforward_channels=int(cfg['embed_dim'] * cfg['mlp_ratio'])),
                      img_size=cfg['img_size'] // 2, patch_size=cfg['patch_size'], out_type='avg_featmap',
                      final_norm=False),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=cfg['num_classes'], in_channels=cfg['embed_dim'])))
    load_checkpoint(small, str(dst), map_location='cpu', strict=True)
    assert small.backbone.pos_embed.shape[1] == 1 + (cfg['img_size'] // 2 // cfg['patch_size']) ** 2

    dst = tmp_path / 'addp.pth'
    tool.main([ref.file('addp'), str(dst), '--keep-decoder'])
    model_cfg = addp_model_cfg(ref, with_token_predictor=False)
    model_cfg.pop('init_cfg')
    addp = MODELS.build(model_cfg)
    load_checkpoint(addp, str(dst), map_location='cpu', strict=True)
    expected = MODELS.build(addp_model_cfg(ref, with_token_predictor=False))
    expected.load_addp_checkpoint(ref.file('addp'))
    for k, v in expected.state_dict().items():
        assert torch.equal(addp.state_dict()[k], v), k
