"""tools/convert_checkpoint.py: release / our checkpoints -> a clean backbone file."""
import os.path as osp
import subprocess
import sys

import torch

from addp_mm.models.backbones import ADDPViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def convert(src, dst):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'convert_checkpoint.py'), str(src), str(dst)],
                          capture_output=True, text=True, timeout=300)
    return proc


def test_convert_release_checkpoint(reference_dir, tmp_path):
    src = osp.join(reference_dir, 'official_addp_public.pth')
    dst = tmp_path / 'out' / 'backbone.pth'
    proc = convert(src, dst)
    assert proc.returncode == 0, proc.stderr
    ckpt = torch.load(dst, weights_only=True)
    keys = set(ckpt['state_dict'])
    assert 'pre_norm.weight' in keys and 'blocks.1.attn.qkv.weight' in keys
    assert not any(k.startswith(('vqgan', 'decoder', 'token_predictor', 'mlm_layer')) for k in keys)
    arch = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=256)
    a = ADDPViT(arch=arch, pre_norm=True, out_type='raw', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    b = ADDPViT(arch=arch, pre_norm=True, out_type='raw', init_cfg=dict(type='Pretrained', checkpoint=src))
    a.init_weights()
    b.init_weights()
    x = torch.randn(1, 3, 256, 256)
    assert torch.equal(a.eval()(x)[0], b.eval()(x)[0])


def test_convert_bad_inputs(tmp_path):
    proc = convert(tmp_path / 'missing.pth', tmp_path / 'x.pth')
    assert proc.returncode != 0 and 'missing.pth' in proc.stderr
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(2, 2)}}, tmp_path / 'nohead.pth')
    proc = convert(tmp_path / 'nohead.pth', tmp_path / 'y.pth')
    assert proc.returncode != 0 and 'no ADDP encoder weights' in proc.stderr
    assert not osp.exists(tmp_path / 'y.pth')
