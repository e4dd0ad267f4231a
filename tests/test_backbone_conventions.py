"""``ADDPViT`` against what the toolboxes' own backbone tests expect of a ViT, behaviour by
behaviour: mmpretrain's ``VisionTransformer`` (tests/test_models/test_backbones/
test_vision_transformer.py of open-mmlab/mmpretrain) and mmseg's ``MAE`` / ``BEiT``
(tests/test_models/test_backbones/test_mae.py of open-mmlab/mmsegmentation), with the options
renamed where ours differ. Where ADDPViT deliberately differs, the test says so and asserts ours:

* default ``out_type='featmap'`` (mmpretrain: ``'cls_token'``): ADDPViT serves mmdet and mmseg,
  whose ViTs give maps, as much as mmpretrain; the classification configs set ``avg_featmap``;
* ``frozen_stages=0`` freezes the embeddings (the "stem", as mmdet/mmseg ResNets and mmpretrain's
  own docstring say; mmpretrain's code freezes nothing for 0);
* errors are ``ValueError`` / ``KeyError`` / ``TypeError`` with a message naming the option
  (mmpretrain / mmseg raise bare ``AssertionError``);
* an input size that is not a multiple of the patch is padded (mmpretrain; mmseg's MAE crops);
* the pre-norm counts as the embedding stage for layer decay (depth 0; mmpretrain gives it the
  last depth).
"""
import math

import pytest
import torch
from mmengine.runner import load_checkpoint, save_checkpoint
from timm.layers import resample_abs_pos_embed

from addp_mm.errors import UsageError
from addp_mm.models.backbones import ADDPViT

SMALL = dict(embed_dims=48, num_layers=4, num_heads=4, feedforward_channels=96)


def vit(**kwargs):
    cfg = dict(arch=SMALL, img_size=64, patch_size=16, drop_path_rate=0.1)
    cfg.update(kwargs)
    return ADDPViT(**cfg)


# ----------------------------------------------------------------------------- structure
def test_structure():
    with pytest.raises(UsageError, match="arch 'unknown' is not one of"):
        vit(arch='unknown')
    with pytest.raises(UsageError, match='embed_dims'):  # a custom arch needs every key
        vit(arch=dict(num_layers=2, num_heads=2, feedforward_channels=64))
    m = vit(arch=dict(embed_dims=32, num_layers=5, num_heads=2, feedforward_channels=48))
    assert (m.embed_dims, m.num_layers, len(m.blocks)) == (32, 5, 5)
    assert all(b.attn.num_heads == 2 and b.mlp.fc1.out_features == 48 for b in m.blocks)
    with pytest.raises(UsageError, match='out_indices'):
        vit(out_indices={1: 1})
    with pytest.raises(ValueError, match='out_indices entry 13'):
        vit(out_indices=[0, 13])
    # stochastic depth grows linearly from 0 to drop_path_rate over the blocks
    m = vit(drop_path_rate=0.1)
    rates = [getattr(b.drop_path, 'drop_prob', 0.0) for b in m.blocks]
    assert rates == pytest.approx([0.1 * i / 3 for i in range(4)])
    assert not isinstance(vit(pre_norm=True).pre_norm, torch.nn.Identity)
    assert isinstance(vit().pre_norm, torch.nn.Identity)


def test_img_size_forms():
    """mmseg: an int, a 1-tuple (square) or a 2-tuple; anything else is a clear error."""
    assert vit(img_size=64).img_size == vit(img_size=(64, )).img_size == (64, 64)
    assert vit(img_size=(32, 64)).patch_resolution == (2, 4)
    with pytest.raises(ValueError, match='img_size'):
        vit(img_size=(64, 64, 64))
    with pytest.raises(UsageError, match='img_size'):
        vit(img_size=64.0)
    with pytest.raises(UsageError, match='out_indices'):
        vit(out_indices=1.0)


# ----------------------------------------------------------------------------- weights
def test_init_weights_with_an_init_cfg_list_still_initialises_the_tables():
    """mmpretrain: with a (non-Pretrained) init_cfg list the position table is still drawn, and
    the listed initialisers are applied on top."""
    m = vit(init_cfg=[dict(type='Kaiming', layer='Conv2d', mode='fan_in', nonlinearity='linear')])
    before = m.patch_embed.proj.weight.detach().clone()
    assert torch.all(m.pos_embed == 0)
    m.init_weights()
    assert not torch.allclose(before, m.patch_embed.proj.weight)
    assert not torch.allclose(m.pos_embed, torch.zeros(()))
    assert m.cls_token.abs().sum() > 0
    with pytest.raises(TypeError):  # mmseg: an unsupported init_cfg
        vit(init_cfg=123).init_weights()


def test_checkpoint_round_trip_and_resized_position_table(tmp_path):
    """mmpretrain: mmengine's save_checkpoint / load_checkpoint(strict=True) round trip, and a
    model of another img_size loads the same file with the table resized as timm resizes it."""
    src = vit()
    src.init_weights()
    path = str(tmp_path / 'vit.pth')
    save_checkpoint(src.state_dict(), path)
    same = vit()
    load_checkpoint(same, path, strict=True)
    assert torch.equal(same.pos_embed, src.pos_embed)
    bigger = vit(img_size=96)
    load_checkpoint(bigger, path, strict=True)
    expected = resample_abs_pos_embed(src.pos_embed.detach(), [6, 6], [4, 4], num_prefix_tokens=1,
                                      interpolation='bicubic', antialias=False)
    torch.testing.assert_close(bigger.pos_embed.detach(), expected)


def test_a_position_table_without_a_class_slot_loads(tmp_path):
    """mmpretrain's ViT with ``with_cls_token=False`` keeps no class slot in ``pos_embed`` (N
    entries, ours N + 1): such a table loads, resized if need be, into the patch slots."""
    src = vit(with_cls_token=False)
    src.init_weights()
    grid = src.pos_embed.detach()[:, 1:]  # a 4x4 table without class slot, as mmpretrain's
    for size, side in ((64, 4), (96, 6)):
        dst = vit(img_size=size, with_cls_token=False)
        state = dict(src.state_dict(), pos_embed=grid)
        dst.load_state_dict(state, strict=True)
        want = resample_abs_pos_embed(grid, [side, side], [4, 4], num_prefix_tokens=0,
                                      interpolation='bicubic', antialias=False)
        torch.testing.assert_close(dst.pos_embed.detach()[:, 1:], want)
        assert torch.all(dst.pos_embed[:, 0] == 0)  # the unused class slot


def test_missing_pretrained_file_is_an_os_error():
    m = vit(init_cfg=dict(type='Pretrained', checkpoint='PATH_THAT_DOES_NOT_EXIST'))
    with pytest.raises(OSError, match='PATH_THAT_DOES_NOT_EXIST'):
        m.init_weights()


def test_mmseg_pretrained_argument():
    """mmseg's MAE/BEiT: ``pretrained`` is a deprecated alias of a Pretrained init_cfg; not with
    an init_cfg, and only a path (a str) or None."""
    with pytest.warns(UserWarning, match='deprecated'):
        m = vit(pretrained='some/file.pth')
    assert m.init_cfg == dict(type='Pretrained', checkpoint='some/file.pth')
    assert vit(pretrained=None, init_cfg=None).init_cfg is None
    with pytest.raises(ValueError, match='both'):
        vit(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth'))
    with pytest.raises(UsageError, match='pretrained'):
        vit(pretrained=123)


# ----------------------------------------------------------------------------- forward
def test_forward_outputs():
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match='with_cls_token=True'):
        vit(with_cls_token=False, out_type='cls_token')
    outs = vit(with_cls_token=False, out_type='featmap')(x)
    assert isinstance(outs, tuple) and len(outs) == 1 and outs[0].shape == (1, 48, 4, 4)
    assert vit(out_type='cls_token')(x)[0].shape == (1, 48)
    assert vit(out_type='avg_featmap')(x)[0].shape == (1, 48)
    assert vit(out_type='raw')(x)[0].shape == (1, 17, 48)
    outs = vit(out_type='cls_token', out_indices=[-3, -2, -1])(x)
    assert len(outs) == 3 and all(o.shape == (1, 48) for o in outs)
    # deliberately: the default output is the feature map (mmpretrain's default: the class token)
    assert vit()(x)[0].shape == (1, 48, 4, 4)


@pytest.mark.parametrize('hw', [(64, 64), (80, 80), (80, 99), (40, 70)])
def test_dynamic_input_size(hw):
    """mmpretrain: any input size, the grid ceil(H/16) x ceil(W/16) (padded to the patch)."""
    m = vit(out_type='featmap')
    out = m(torch.randn(1, 3, *hw))[0]
    assert out.shape == (1, 48, math.ceil(hw[0] / 16), math.ceil(hw[1] / 16))


# ----------------------------------------------------------------------------- freezing
def test_frozen_stages_follow_the_convention():
    """``frozen_stages=k`` freezes the embeddings and blocks 0..k-1 (kept in eval mode through
    ``train()``), and with every block frozen the final norm and the ``avg_featmap`` fc_norm."""
    m = vit(frozen_stages=4, out_type='avg_featmap', pre_norm=True)
    m.train()
    assert not any(p.requires_grad for p in m.parameters())
    assert not m.norm.training and not m.fc_norm.training
    m = vit(frozen_stages=2, out_type='avg_featmap')
    m.train()
    assert not m.pos_embed.requires_grad and not m.cls_token.requires_grad
    assert all(not b.training for b in m.blocks[:2]) and all(b.training for b in m.blocks[2:])
    assert all(p.requires_grad for p in list(m.norm.parameters()) + list(m.fc_norm.parameters()))
    # deliberately: 0 freezes the embeddings only (the stem), -1 nothing
    m = vit(frozen_stages=0)
    assert not m.patch_embed.proj.weight.requires_grad and m.blocks[0].attn.qkv.weight.requires_grad
    assert all(p.requires_grad for p in vit(frozen_stages=-1).parameters())


def test_layer_depth():
    m = vit(pre_norm=True)
    assert m.get_layer_depth('backbone.cls_token', 'backbone.') == (0, 6)
    assert m.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)
    assert m.get_layer_depth('backbone.patch_embed.proj.weight', 'backbone.') == (0, 6)
    assert m.get_layer_depth('backbone.blocks.3.attn.qkv.weight', 'backbone.') == (4, 6)
    assert m.get_layer_depth('backbone.norm.weight', 'backbone.') == (5, 6)
    assert m.get_layer_depth('head.fc.weight', 'backbone.') == (5, 6)
    # deliberately: the pre-norm belongs to the embedding stage
    assert m.get_layer_depth('backbone.pre_norm.weight', 'backbone.') == (0, 6)

