"""The encoders as timm models behave as timm's own ViTs, base and large, at 256 px and at other
sizes (``img_size=`` at creation, ``dynamic_img_size`` / ``dynamic_img_pad``): the checks timm's own
model tests make (pretrained config, ``forward_features`` / ``forward_head``,
``forward_intermediates``, ``prune_intermediate_layers``, ``features_only``, ``reset_classifier``,
gradient checkpointing, meta device, TorchScript, FX, pretrained loading with other input
channels), written for these models. Full-size models are built on the meta device (shapes);
numbers come from the real width and heads with one block, or from the reference files' tiny
encoder, and equal ``ADDPViT``'s on the same weights at every size."""
import functools
import os
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

import addp_mm  # noqa: F401 (registers the timm models)
import timm
from addp_mm.checkpoint import ENCODER, encoder_state_dict, load_weights
from addp_mm.errors import UsageError
from addp_mm.models.backbones import ADDPViT
from timm.models import get_model_input_config

NAMES = ['addp_vit_base_patch16_256', 'addp_vit_large_patch16_256']
SIZE = {'addp_vit_base_patch16_256': (768, 12, 12), 'addp_vit_large_patch16_256': (1024, 24, 16)}
TINY = dict(embed_dim=64, depth=2, num_heads=4)  # the reference files' encoder
# (creation arguments, input height and width): the default size and others
MODES = {
    '256': ({}, (256, 256)),
    'img_size=224': (dict(img_size=224), (224, 224)),
    'dynamic-224': (dict(dynamic_img_size=True), (224, 224)),
    'dynamic-pad-320x200': (dict(dynamic_img_size=True, dynamic_img_pad=True), (320, 200)),
}


def grid(hw):
    return tuple(-(-s // 16) for s in hw)  # a padded input's grid rounds up


def param_count(dim, depth):
    """ViT/16 at 256 px, the ADDP head (fc_norm, no classifier), counted by hand."""
    embed = 3 * 16 * 16 * dim + dim + dim + (1 + 16 * 16) * dim  # patch conv, class token, table
    block = 12 * dim * dim + 13 * dim  # qkv, proj, fc1, fc2 (+ biases) and two LayerNorms
    return embed + depth * block + 2 * dim


def test_pretrained_cfg_is_the_released_files_and_listed():
    assert set(timm.list_models('*addp*', pretrained=True)) == {
        'addp_vit_base_patch16_256.release', 'addp_vit_large_patch16_256.release'}
    for name, file in zip(NAMES, ('addp-vit-base-16.pth', 'addp-vit-large-16.pth')):
        cfg = timm.models.get_pretrained_cfg(name + '.release')
        # the released pretraining file: an encoder evaluated at 256 px (short side 256, bicubic,
        # centre crop 256), ImageNet mean / std, no classifier
        assert cfg.file == f'checkpoints/{file}' and cfg.custom_load
        assert cfg.input_size == (3, 256, 256) and cfg.fixed_input_size and cfg.num_classes == 0
        assert (cfg.interpolation, cfg.crop_pct, cfg.crop_mode) == ('bicubic', 1.0, 'center')
        assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
        assert (cfg.first_conv, cfg.classifier) == ('patch_embed.proj', 'head')


@pytest.mark.parametrize('args', [{}, dict(img_size=384), dict(dynamic_img_size=True)])
def test_input_config_as_timms_own_vit(args):
    """What the configs say of a model, as timm says it of its own ViT built the same way: the
    data config is the source file's (256 px here, 224 px for timm's), the input config the
    model's (its size; fixed unless dynamic); a fixed model takes only its size."""
    ours = timm.create_model(NAMES[0], device='meta', **args)
    theirs = timm.create_model('vit_base_patch16_224', device='meta', **args)
    ours_in, theirs_in = get_model_input_config(ours), get_model_input_config(theirs)
    size = args.get('img_size')
    assert ours_in['input_size'] == (3, size or 256, size or 256)
    assert theirs_in['input_size'] == (3, size or 224, size or 224)
    fixed = not args.get('dynamic_img_size')
    assert ours_in['fixed_input_size'] == theirs_in['fixed_input_size'] == fixed
    assert ours.pretrained_cfg['fixed_input_size'] == theirs.pretrained_cfg['fixed_input_size']
    assert timm.data.resolve_model_data_config(ours)['input_size'] == (3, 256, 256)
    assert timm.data.resolve_model_data_config(theirs)['input_size'] == (3, 224, 224)
    assert ours(torch.empty(1, 3, *ours_in['input_size'][1:], device='meta')).shape == (1, 768)
    other = torch.empty(1, 3, 224, 320, device='meta')
    if fixed:
        with pytest.raises(AssertionError, match="doesn't match model"):
            ours(other)
    else:
        assert ours(other).shape == (1, 768)


@pytest.mark.parametrize('mode', list(MODES))
@pytest.mark.parametrize('name', NAMES)
def test_timm_model_api_at_full_size_on_the_meta_device(name, mode):
    args, hw = MODES[mode]
    dim, depth, heads = SIZE[name]
    h, w = grid(hw)
    model = timm.create_model(name, device='meta', **args)
    assert len(model.blocks) == depth and model.blocks[0].attn.num_heads == heads
    if mode == '256':
        assert sum(p.numel() for p in model.parameters()) == param_count(dim, depth)
    assert model.num_classes == 0 and model.num_features == model.head_hidden_size == dim
    assert [f['num_chs'] for f in model.feature_info] == [dim] * depth
    assert {f['reduction'] for f in model.feature_info} == {16}
    state = model.state_dict()
    assert 'patch_embed.proj.weight' in state and 'patch_embed.proj.bias' in state
    x = torch.empty(1, 3, *hw, device='meta')

    # forward_features: the tokens (class first); forward_head(pre_logits=True): pooled features
    tokens = model.forward_features(x)
    assert tokens.shape == (1, 1 + h * w, dim)
    assert model.forward_head(tokens, pre_logits=True).shape == (1, dim)

    # forward_intermediates: every block by default, NCHW maps of the input's grid; or the last n
    # (or the listed) blocks, NLC, with the class tokens apart, without the final tokens
    final, maps = model.forward_intermediates(x)
    assert final.shape == tokens.shape and len(maps) == depth
    assert all(m.shape == (1, dim, h, w) for m in maps)
    last2 = model.forward_intermediates(x, indices=2, output_fmt='NLC', norm=True, stop_early=True,
                                        intermediates_only=True, return_prefix_tokens=True)
    assert [(m.shape, p.shape) for m, p in last2] == [((1, h * w, dim), (1, 1, dim))] * 2

    # features_only: the chosen blocks' maps, the model pruned after the last one
    feats = timm.create_model(name, device='meta', features_only=True, out_indices=(1, 3), **args)
    assert feats.feature_info.channels() == [dim, dim]
    assert feats.feature_info.reduction() == [16, 16]
    assert len(feats.model.blocks) == 4
    assert [f.shape for f in feats(x)] == [(1, dim, h, w)] * 2

    # prune_intermediate_layers keeps the blocks up to the last index and drops the head
    kept = model.prune_intermediate_layers(indices=[-depth + 1], prune_norm=True)
    assert kept == [1] and len(model.blocks) == 2 and model.num_classes == 0
    kept_maps = model.forward_intermediates(x, indices=kept, intermediates_only=True)
    assert [m.shape for m in kept_maps] == [(1, dim, h, w)]

    # reset_classifier: a new head (average pooling), then no head and no pooling (the tokens)
    model.reset_classifier(7, 'avg')
    assert model(x).shape == (1, 7) and model.get_classifier().weight.shape == (7, dim)
    model.reset_classifier(0, '')
    assert model(x).shape == (1, 1 + h * w, dim)
    model.set_grad_checkpointing()
    assert model.grad_checkpointing and model(x).shape == (1, 1 + h * w, dim)


def shallow(name, **kw):
    """The model's real width and heads with one block (or ``kw``'s), random weights, eval mode."""
    torch.manual_seed(0)
    return timm.create_model(name, **dict(dict(depth=1), **kw)).eval()


@functools.lru_cache
def weights_at_256(name):
    return shallow(name).state_dict()


def as_addp_vit(model, state, img_size):
    """``ADDPViT`` of ``model``'s size at ``img_size`` holding ``state`` (a 256-px table resized
    on load as the release does)."""
    dim, heads = model.embed_dim, model.blocks[0].attn.num_heads
    vit = ADDPViT(arch=dict(embed_dims=dim, num_layers=len(model.blocks), num_heads=heads,
                            feedforward_channels=4 * dim),
                  img_size=img_size, final_norm=False, out_type='raw')
    load_weights(vit, state, encoder_state_dict, ENCODER)
    return vit.eval()


@pytest.mark.parametrize('mode', list(MODES))
@pytest.mark.parametrize('name', NAMES)
def test_features_equal_addp_vit_at_every_size(name, mode):
    """Same weights (made at 256 px), same features as ``ADDPViT`` (its table resized bicubic,
    ``align_corners=False``, no antialiasing): on load into an ``img_size=224`` model and per
    input with ``dynamic_img_size``; a padded input (``dynamic_img_pad``) as ``ADDPViT`` on the
    zero-padded image."""
    args, hw = MODES[mode]
    state = weights_at_256(name)
    model = shallow(name, **args)
    model.load_state_dict(state)  # the table resized to an img_size=224 model's grid
    vit = as_addp_vit(model, state, args.get('img_size', 256))
    x = torch.randn(1, 3, *hw)
    padded = F.pad(x, (0, 16 * grid(hw)[1] - hw[1], 0, 16 * grid(hw)[0] - hw[0]))
    with torch.no_grad():
        tokens = model.forward_features(x)
        torch.testing.assert_close(tokens, vit(padded)[-1], rtol=1e-5, atol=1e-5)


def test_dynamic_table_is_resized_without_antialiasing():
    """timm's own ViTs antialias the resized table; ours resize it as ADDP (the numbers of
    ``ADDPViT`` above): per input as on load, which is not timm's antialiased table."""
    dynamic = shallow(NAMES[0], dynamic_img_size=True, **TINY)
    static = shallow(NAMES[0], img_size=224, **TINY)
    static.load_state_dict(dynamic.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(dynamic.forward_features(x), static.forward_features(x))
        antialiased = timm.layers.resample_abs_pos_embed(dynamic.pos_embed, (14, 14), (16, 16))
        assert (antialiased - static.pos_embed).abs().max() > 1e-2


@pytest.mark.parametrize('name', NAMES)
def test_torchscript_and_fx_give_the_eager_numbers(name):
    from timm.models import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor
    for args, sizes in (({}, [(256, 256)]), (dict(dynamic_img_size=True), [(224, 320)])):
        with timm.set_scriptable(True):
            model = shallow(name, **args)
        scripted = torch.jit.script(model)
        traced = create_feature_extractor(
            model, return_nodes=['fc_norm'], tracer_kwargs=dict(
                leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions()))
        for hw in sizes:  # the traced graph holds for every size of a dynamic model
            x = torch.randn(1, 3, *hw)
            with torch.no_grad():
                eager = model(x)
                torch.testing.assert_close(scripted(x), eager, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(traced(x)['fc_norm'], eager, rtol=1e-5, atol=1e-5)


def test_intermediates_are_the_blocks_outputs():
    """The last map is the final tokens' patch part; ``norm=True`` applies ``model.norm``, an
    identity as in timm's average-pooling ViTs (ADDP normalises after pooling, ``fc_norm``)."""
    model = shallow(NAMES[0], dynamic_img_size=True, **TINY)
    x = torch.randn(1, 3, 224, 320)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        normed = model.forward_intermediates(x, norm=True, intermediates_only=True)
    torch.testing.assert_close(final, model.forward_features(x))
    torch.testing.assert_close(maps[-1].flatten(2).transpose(1, 2), final[:, 1:])
    assert all(torch.equal(a, b) for a, b in zip(maps, normed))


def test_grad_checkpointing_gives_the_same_output_and_gradients():
    model = shallow(NAMES[0], dynamic_img_size=True, **TINY).train()
    x = torch.randn(1, 3, 224, 192)
    model(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing()
    model(x).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('img_size', [224, 384])
def test_set_input_size_equals_building_at_that_size(reference_dir, img_size):
    file = osp.join(reference_dir, 'official_addp_public.pth')
    kw = dict(pretrained=True, pretrained_cfg_overlay=dict(file=file), **TINY)
    built = timm.create_model(NAMES[0], img_size=img_size, **kw).eval()
    resized = timm.create_model(NAMES[0], **kw).eval()
    resized.set_input_size(img_size=img_size)
    assert get_model_input_config(resized)['input_size'] == (3, img_size, img_size)
    torch.testing.assert_close(resized.pos_embed, built.pos_embed, rtol=0, atol=0)


def test_pretrained_loads_as_timm_loads_its_files(reference_dir, tmp_path, monkeypatch):
    """The default file under checkpoints/; other input channels (timm's ``adapt_input_conv``) or
    patch size (``resample_patch_embed``); a file loaded after a meta-device build."""
    file = osp.join(reference_dir, 'official_addp_public.pth')
    os.makedirs(tmp_path / 'checkpoints')
    os.symlink(file, tmp_path / 'checkpoints' / 'addp-vit-base-16.pth')
    monkeypatch.chdir(tmp_path)
    rgb = timm.create_model(NAMES[0], pretrained=True, **TINY).eval()  # the .release file
    gray = timm.create_model(NAMES[0], pretrained=True, in_chans=1, num_classes=5, **TINY).eval()
    x = torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        assert gray(x).shape == (1, 5)
        # a grey image as three equal channels: the same features
        torch.testing.assert_close(gray.forward_features(x),
                                   rgb.forward_features(x.expand(-1, 3, -1, -1)))
    fine = timm.create_model(NAMES[0], pretrained=True, patch_size=8, **TINY)
    assert fine.patch_embed.proj.weight.shape == (64, 3, 8, 8)
    assert fine.pos_embed.shape == (1, 1 + 32 * 32, 64)
    # meta build, then memory, then the file: the same model as a direct build
    late = timm.create_model(NAMES[0], device='meta', **TINY)
    late.to_empty(device='cpu')
    late.load_pretrained(file)
    for (n, a), b in zip(rgb.state_dict().items(), late.state_dict().values()):
        if not n.startswith('fc_norm'):  # not in the file: initialised
            assert torch.equal(a, b), n
    with pytest.raises(UsageError, match='meta device loads nothing'):
        timm.create_model(NAMES[0], pretrained=True, device='meta', **TINY)
    with pytest.raises(FileNotFoundError, match='ADDP release'):
        timm.create_model(NAMES[1], pretrained=True, **TINY)  # no addp-vit-large-16.pth here


@pytest.mark.parametrize('arg', [dict(class_token=False), dict(reg_tokens=4),
                                 dict(no_embed_class=True), dict(pos_embed='none')])
def test_another_token_layout_is_refused(arg):
    with pytest.raises(UsageError, match=f'{next(iter(arg))}=.*ADDP encoder has a class token'):
        timm.create_model(NAMES[0], device='meta', **arg)
