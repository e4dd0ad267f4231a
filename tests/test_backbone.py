"""ADDPViT: output types, freezing, position interpolation, checkpoint formats, ViTDet options."""
import copy

import pytest
import torch
from mmengine.registry import MODELS

from addp_mm.errors import UsageError
from addp_mm.models.backbones import ADDPViT

TINY = dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64)


def tiny(**kwargs):
    cfg = dict(arch=TINY, img_size=64, patch_size=16)
    cfg.update(kwargs)
    m = ADDPViT(**cfg)
    m.init_weights()
    return m


@pytest.mark.parametrize('out_type,shape', [
    ('featmap', (2, 32, 4, 4)), ('raw', (2, 17, 32)), ('cls_token', (2, 32)), ('avg_featmap', (2, 32))])
def test_out_types(out_type, shape):
    m = tiny(out_type=out_type, out_indices=(1, -1)).eval()
    outs = m(torch.randn(2, 3, 64, 64))
    assert len(outs) == 2 and all(tuple(o.shape) == shape for o in outs)
    if out_type == 'featmap':  # dense heads (mmcv RoIAlign on CPU) read the raw NCHW buffer
        assert all(o.is_contiguous() for o in outs)


def test_avg_featmap_is_fc_norm_of_mean_patch_tokens():
    m = tiny(out_type='avg_featmap', final_norm=False).eval()
    raw = copy.deepcopy(m)
    raw.out_type = 'raw'
    x = torch.randn(2, 3, 64, 64)
    tokens = raw(x)[0]
    assert torch.allclose(m(x)[0], m.fc_norm(tokens[:, 1:].mean(1)), atol=1e-6)


def test_final_norm_only_on_last_layer():
    m = tiny(out_type='raw', out_indices=(0, 2), final_norm=True).eval()
    plain = tiny(out_type='raw', out_indices=(0, 2), final_norm=False).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith('norm.')})
    x = torch.randn(1, 3, 64, 64)
    (first, last), (first_plain, last_plain) = m(x), plain(x)
    assert torch.allclose(first, first_plain)  # no norm on intermediate outputs
    assert torch.allclose(last, m.norm(last_plain), atol=1e-6)


def test_bad_options_are_clear():
    with pytest.raises(UsageError, match='arch'):
        ADDPViT(arch='huge-ish')
    with pytest.raises(ValueError, match='with_cls_token=False'):
        ADDPViT(arch=TINY, window_size=2, window_block_indexes=(0,))
    with pytest.raises(ValueError, match='out_type'):
        ADDPViT(arch=TINY, out_type='tokens')
    with pytest.raises(ValueError, match='out_indices'):
        ADDPViT(arch=TINY, out_indices=(5,))


def test_frozen_stages():
    m = tiny(frozen_stages=2)
    m.train()
    assert not m.pos_embed.requires_grad and not m.cls_token.requires_grad
    assert all(not p.requires_grad for p in m.patch_embed.parameters())
    for i, block in enumerate(m.blocks):
        assert all(p.requires_grad == (i >= 2) for p in block.parameters())
        assert block.training == (i >= 2)
    assert all(p.requires_grad for p in m.norm.parameters())


def test_get_layer_depth():
    m = tiny()
    assert m.get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 5)
    assert m.get_layer_depth('backbone.patch_embed.proj.weight', 'backbone.') == (0, 5)
    assert m.get_layer_depth('backbone.blocks.2.mlp.fc1.weight', 'backbone.') == (3, 5)
    assert m.get_layer_depth('backbone.norm.weight', 'backbone.') == (4, 5)
    assert m.get_layer_depth('head.fc.weight', 'backbone.') == (4, 5)


def test_pos_embed_interpolation_on_load_and_on_the_fly(tmp_path):
    src = tiny(img_size=64)  # 4x4 grid
    torch.save({'model': src.state_dict()}, tmp_path / 'src.pth')
    dst = tiny(img_size=96, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'src.pth')))
    assert dst.pos_embed.shape == (1, 1 + 36, 32)
    assert torch.equal(dst.pos_embed[:, 0], src.pos_embed[:, 0])  # cls slot kept
    grid = src.pos_embed[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(6, 6), mode='bicubic', align_corners=False)
    assert torch.allclose(dst.pos_embed[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 36, 32), atol=1e-6)
    # an input of another size uses the table resized on the fly
    out = dst.eval()(torch.randn(1, 3, 128, 80))[0]
    assert out.shape == (1, 32, 8, 5)


def test_checkpoint_formats(tmp_path):
    src = tiny(pre_norm=True, out_type='avg_featmap')
    sd = src.state_dict()
    release = {k.replace('pre_norm.', 'tokenizer_norm.'): v for k, v in sd.items()}
    release.update({'decoder_embed.weight': torch.zeros(2, 2), 'vqgan.encoder.conv_in.weight': torch.zeros(1)})
    files = {
        'release_pretrain': {'model': release, 'epoch': 3},
        'ours': {'state_dict': {f'backbone.{k}': v for k, v in sd.items()} | {'neck.x': torch.zeros(1)},
                 'meta': {'epoch': 3}},
        'converted': {'state_dict': sd},
        'plain': sd,
    }
    for name, ckpt in files.items():
        path = tmp_path / f'{name}.pth'
        torch.save(ckpt, path)
        m = tiny(pre_norm=True, out_type='avg_featmap')
        report = m.load_pretrained(str(path))
        assert not report['initialised'], name
        for k, v in m.state_dict().items():
            assert torch.equal(v, sd[k]), (name, k)
    report = tiny(pre_norm=True).load_pretrained(str(tmp_path / 'release_pretrain.pth'))
    assert 'decoder_embed.weight' in report['ignored'] and 'tokenizer_norm.weight' in report['used']


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    # a release file: where to get it
    m = ADDPViT(arch=TINY, img_size=64,
                init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'addp-vit-base-16.pth')))
    with pytest.raises(FileNotFoundError, match='addp-vit-base-16.pth.*ADDP release'):
        m.init_weights()
    # any other path (e.g. a mistyped own checkpoint): no release hint
    m = ADDPViT(arch=TINY, img_size=64, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth')))
    with pytest.raises(FileNotFoundError, match='nope.pth.*Check the path') as error:
        m.init_weights()
    assert 'release' not in str(error.value).split('nope.pth')[-1]


@pytest.mark.parametrize('size', [(64, 64), (70, 100), (33, 47)])
def test_window_attention_with_rel_pos_any_size(size):
    m = tiny(with_cls_token=False, window_size=3, window_block_indexes=(0, 2), use_rel_pos=True).eval()
    for block in m.blocks:  # make the zero-initialised tables matter
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.1)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.1)
    x = torch.randn(1, 3, *size)
    out = m(x)[0]
    assert out.shape == (1, 32, -(-size[0] // 16), -(-size[1] // 16))
    assert torch.isfinite(out).all()
    assert m.blocks[0].attn.rel_pos_h.shape == (5, 8)   # window grid 3 -> 2*3-1
    assert m.blocks[1].attn.rel_pos_h.shape == (7, 8)   # global: 4x4 grid -> 7


def test_window_attention_equals_global_when_window_covers_grid():
    g = tiny(with_cls_token=False, use_rel_pos=True).eval()
    w = tiny(with_cls_token=False, use_rel_pos=True, window_size=4, window_block_indexes=(0, 1, 2)).eval()
    w.load_state_dict(g.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(g(x)[0], w(x)[0], atol=1e-5)


def test_with_cp_same_outputs_and_grads():
    torch.manual_seed(0)
    a = tiny(drop_path_rate=0.0)
    b = tiny(with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outs = []
    for m in (a, b):
        m.train()
        m.zero_grad()
        y = m(x)[0]
        y.square().mean().backward()
        outs.append((y.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-6)
    for n in outs[0][1]:
        assert torch.allclose(outs[0][1][n], outs[1][1][n], atol=1e-6), n


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_from_every_toolbox_scope(scope):
    import importlib

    from mmengine.registry import DefaultScope
    models = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        m = models.build(dict(type='ADDPViT', arch=TINY, img_size=64))
    assert isinstance(m, ADDPViT)
    assert MODELS.get('ADDPViT') is ADDPViT


def test_checkpoint_of_another_arch_is_a_clear_error(tmp_path):
    torch.save({'state_dict': tiny().state_dict()}, tmp_path / 'p16.pth')
    m = tiny(patch_size=8)
    with pytest.raises(ValueError, match=r'patch_embed.proj.weight \(32, 3, 16, 16\) in the file vs '
                                         r'\(32, 3, 8, 8\) in the model'):
        m.load_pretrained(str(tmp_path / 'p16.pth'))


def test_foreign_architectures_as_init_cfg_name_the_keys(tmp_path):
    """A ResNet's state dict, a timm ViT of another width and one of fewer blocks given as the
    backbone's init_cfg: errors listing missing / unexpected / shape-mismatched keys by name
    (first few, with counts), never a partly random model."""
    from timm.models.vision_transformer import VisionTransformer
    from torchvision.models import resnet18
    torch.save(resnet18().state_dict(), tmp_path / 'resnet.pth')
    torch.save({'model': VisionTransformer(img_size=64, patch_size=16, embed_dim=48, depth=3, num_heads=4,
                                           num_classes=0).state_dict()}, tmp_path / 'vit48.pth')
    torch.save({'model': VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=4,
                                           mlp_ratio=2., num_classes=0).state_dict()}, tmp_path / 'vit_2blocks.pth')
    cases = [('resnet.pth', r'no tensor of it fits.*unexpected keys \d+: conv1\.weight, bn1\.weight'),
             ('vit48.pth', r'shape-mismatched keys 42: cls_token \(1, 1, 48\) in the file vs '
                           r'\(1, 1, 32\) in the model, pos_embed'),
             ('vit_2blocks.pth', r'missing keys \d+: blocks\.2\.norm1\.weight')]
    for name, pattern in cases:
        m = ADDPViT(arch=TINY, img_size=64, patch_size=16, init_cfg=dict(type='Pretrained',
                                                                         checkpoint=str(tmp_path / name)))
        with pytest.raises(ValueError, match=pattern) as e:
            m.init_weights()
        assert name in str(e.value)


def test_no_cls_token_without_a_class_token():
    m = tiny(with_cls_token=False, out_type='featmap')
    assert m.cls_token is None and 'cls_token' not in m.state_dict()
    m(torch.randn(1, 3, 64, 64))[0].sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    # a checkpoint with a class token (the release's, ours before) still loads strictly
    src = tiny().state_dict()
    m.load_state_dict(src, strict=True)
    assert torch.equal(m.pos_embed, src['pos_embed'])


def test_every_load_path_resizes_the_tables(tmp_path):
    """load_state_dict / mmengine's load_checkpoint (load_from, resume, tools/test.py) resize the
    position table and the relative-position tables in the pre-hook, as init_cfg does."""
    from mmengine.runner import load_checkpoint
    kw = dict(with_cls_token=False, use_rel_pos=True, window_size=2, window_block_indexes=(0,))
    src = tiny(img_size=64, **kw)  # 4x4 grid, rel-pos tables of 2*4-1 = 7 (global) / 3 (window)
    torch.nn.init.normal_(src.blocks[1].attn.rel_pos_h)
    sd = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    torch.save({'state_dict': sd}, tmp_path / 'ours.pth')
    dst = tiny(img_size=96, **kw)  # 6x6 grid
    expected = tiny(img_size=96, **kw, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'ours.pth')))
    expected.init_weights()
    assert expected.pos_embed.shape == (1, 37, 32) and expected.blocks[1].attn.rel_pos_h.shape[0] == 11
    parent = torch.nn.Module()
    parent.backbone = dst
    load_checkpoint(parent, str(tmp_path / 'ours.pth'), strict=True)
    for k, v in expected.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert torch.equal(dst.blocks[0].attn.rel_pos_h, src.blocks[0].attn.rel_pos_h)  # window: same size


@pytest.mark.parametrize('requires_grad', [True, False])
def test_norm_cfg_requires_grad_is_honoured(requires_grad):
    """mm configs write ``norm_cfg=dict(type='LN', requires_grad=...)``: built, and honoured."""
    m = tiny(norm_cfg=dict(type='LN', eps=1e-6, requires_grad=requires_grad), pre_norm=True,
             out_type='avg_featmap')
    norms = [m.pre_norm, m.norm, m.fc_norm] + [b.norm1 for b in m.blocks] + [b.norm2 for b in m.blocks]
    assert all(isinstance(n, torch.nn.LayerNorm) and n.eps == 1e-6 for n in norms)
    assert all(p.requires_grad == requires_grad for n in norms for p in n.parameters())
    # everything else still trains
    assert m.blocks[0].attn.qkv.weight.requires_grad and m.patch_embed.proj.weight.requires_grad


# ------------------------------------------------------------------ table resizing, independently
def _linear_resize(table, size):
    """``(L, C)`` -> ``(size, C)``: linear interpolation along L with half-pixel centres
    (``align_corners=False``), written from the definition in NumPy."""
    import numpy as np
    t = np.asarray(table, np.float64)
    L = t.shape[0]
    out = np.empty((size, t.shape[1]))
    for i in range(size):
        x = max((i + 0.5) * L / size - 0.5, 0.0)
        lo = min(int(np.floor(x)), L - 1)
        hi = min(lo + 1, L - 1)
        out[i] = (1 - (x - lo)) * t[lo] + (x - lo) * t[hi]
    return out


def _bicubic_resize(grid, size):
    """``(H, W, C)`` -> ``(size, size, C)``: Keys' cubic convolution (a = -0.75), half-pixel
    centres, edge samples repeated: the definition behind bicubic ``align_corners=False``."""
    import numpy as np
    g = np.asarray(grid, np.float64)

    def weights(t):
        a = -0.75
        out = []
        for d in (t + 1, t, 1 - t, 2 - t):
            d = abs(d)
            out.append((a + 2) * d ** 3 - (a + 3) * d ** 2 + 1 if d <= 1 else
                       a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a)
        return out

    def along(arr, n, axis):
        arr = np.moveaxis(arr, axis, 0)
        L = arr.shape[0]
        res = np.empty((n,) + arr.shape[1:])
        for i in range(n):
            x = (i + 0.5) * L / n - 0.5
            x0 = int(np.floor(x))
            w = weights(x - x0)
            res[i] = sum(wk * arr[min(max(x0 - 1 + k, 0), L - 1)] for k, wk in enumerate(w))
        return np.moveaxis(res, 0, axis)

    return along(along(g, size, 0), size, 1)


def test_table_resizes_equal_independent_interpolations():
    """A checkpoint of another grid: the relative-position tables are resized linearly and the
    position table bicubically (class slot kept), value for value as written out here, on load
    and (relative position) in the attention of another grid."""
    import numpy as np

    from addp_mm.models.layers import get_rel_pos
    torch.manual_seed(0)
    kw = dict(with_cls_token=False, use_rel_pos=True)
    src = tiny(img_size=64, **kw)  # 4x4 grid: global tables of 7 distances, positions 1 + 16
    with torch.no_grad():
        for p in (src.pos_embed, src.blocks[0].attn.rel_pos_h, src.blocks[0].attn.rel_pos_w):
            p.normal_()
    dst = tiny(img_size=112, **kw)  # 7x7 grid: 13 distances, 1 + 49 positions
    dst.load_state_dict(src.state_dict())
    for name in ('rel_pos_h', 'rel_pos_w'):
        got = getattr(dst.blocks[0].attn, name).detach().numpy()
        want = _linear_resize(getattr(src.blocks[0].attn, name).detach(), 13)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    pos = src.pos_embed.detach()[0]
    np.testing.assert_allclose(dst.pos_embed.detach()[0, 0].numpy(), pos[0].numpy())  # class slot
    want = _bicubic_resize(pos[1:].reshape(4, 4, -1), 7).reshape(49, -1)
    np.testing.assert_allclose(dst.pos_embed.detach()[0, 1:].numpy(), want, rtol=1e-4, atol=1e-5)
    # inside attention, a table of another length is resized to 2 * max(q, k) - 1 distances and
    # indexed by the (scaled) offset q - k + (k - 1)
    table = torch.randn(7, 4, dtype=torch.float64)
    resized = _linear_resize(table, 9)
    rel = get_rel_pos(5, 5, table).numpy()
    for qi in range(5):
        for ki in range(5):
            np.testing.assert_allclose(rel[qi, ki], resized[qi - ki + 4], rtol=1e-6)


@pytest.mark.parametrize('pre_norm', [False, True])
def test_equals_timm_vision_transformer_with_the_same_weights(pre_norm):
    """``ADDPViT`` (global attention, class token, final norm) is timm's ``VisionTransformer`` of
    the same dims: timm loads its state dict strictly (``pre_norm`` is timm's ``norm_pre``), and
    the tokens, the gradient of the input and every parameter's gradient agree."""
    from functools import partial

    from timm.layers import LayerNorm
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    ours = tiny(out_type='raw', final_norm=True, pre_norm=pre_norm, init_mode='release')
    ref = VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=3, num_heads=4,
                            mlp_ratio=2.0, qkv_bias=True, num_classes=0, pre_norm=pre_norm,
                            norm_layer=partial(LayerNorm, eps=1e-6))
    if pre_norm:  # timm's pre-norm variant (CLIP's) drops the patch bias, ADDP's keeps it
        ref.patch_embed.proj = torch.nn.Conv2d(3, 32, 16, stride=16, bias=True)
    state = {k.replace('pre_norm.', 'norm_pre.'): v for k, v in ours.state_dict().items()}
    ref.load_state_dict(state, strict=True)
    ours.train(), ref.train()  # no dropout / drop path configured: train mode is deterministic
    x1 = torch.randn(2, 3, 64, 64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    a, b = ours(x1)[-1], ref.forward_features(x2)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(a)
    (a * weights).sum().backward()
    (b * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-6)
    grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name.replace('pre_norm.', 'norm_pre.')].grad,
                                   rtol=1e-4, atol=1e-6, msg=name)
