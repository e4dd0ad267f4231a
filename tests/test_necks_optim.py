"""SimpleFPN and the layer-wise lr decay constructor."""
import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from addp_mm.models.backbones import ADDPViT

TINY = dict(embed_dims=32, num_layers=4, num_heads=4, feedforward_channels=64)


def test_simple_fpn_levels():
    neck = MODELS.build(dict(type='SimpleFPN', in_channels=32, out_channels=16, num_outs=5))
    outs = neck((torch.randn(2, 32, 8, 12),))
    assert [tuple(o.shape[2:]) for o in outs] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert all(o.shape[:2] == (2, 16) for o in outs)
    assert all(o.is_contiguous() for o in outs)  # mmcv's CPU RoIAlign reads the raw NCHW buffer
    with pytest.raises(ValueError, match='scale factor 3'):
        MODELS.build(dict(type='SimpleFPN', in_channels=32, scale_factors=(3.0,), num_outs=1))


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = ADDPViT(arch=TINY, img_size=32, patch_size=8, frozen_stages=1)
        self.head = nn.Linear(32, 3)


def build(rate, **paramwise):
    return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=rate, **paramwise)))


def test_layer_decay_lrs_and_weight_decay():
    model = Classifier()
    wrapper = build(0.5)(model)
    lr_of, wd_of = {}, {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            lr_of[names[id(p)]] = group['lr']
            wd_of[names[id(p)]] = group['weight_decay']
    L = 4 + 2
    assert lr_of['backbone.blocks.3.attn.qkv.weight'] == pytest.approx(0.5 ** (L - 1 - 4))
    assert lr_of['backbone.blocks.1.mlp.fc1.weight'] == pytest.approx(0.5 ** (L - 1 - 2))
    assert lr_of['head.weight'] == pytest.approx(1.0) and lr_of['backbone.norm.weight'] == pytest.approx(1.0)
    # frozen_stages=1: embeddings and block 0 are not in the optimizer at all
    assert 'backbone.pos_embed' not in lr_of and 'backbone.blocks.0.attn.qkv.weight' not in lr_of
    assert wd_of['backbone.blocks.3.attn.qkv.bias'] == 0.0 and wd_of['backbone.norm.weight'] == 0.0
    assert wd_of['backbone.blocks.3.attn.qkv.weight'] == pytest.approx(0.05)


def test_layer_decay_no_decay_names_and_error():
    model = Classifier()
    model.backbone.frozen_stages = -1
    for p in model.parameters():
        p.requires_grad = True
    wrapper = build(1.0, no_decay_names=())(model)
    wd = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    assert wd[id(model.backbone.pos_embed)] == pytest.approx(0.05)  # the release decays pos_embed
    with pytest.raises(ValueError, match='get_layer_depth'):
        build(0.7)(nn.Sequential(nn.Linear(2, 2)))


def test_every_parameter_without_weight_decay_is_logged(tmp_path):
    """The run's log names every parameter that gets no weight decay (block indices folded into
    ``*`` with a count) and none that does."""
    import re

    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('layer_decay_log_test', log_file=str(tmp_path / 'run.log'))
    model = Classifier()
    wrapper = build(0.7)(model)
    for handler in logger.handlers:
        handler.flush()
    line = next(li for li in (tmp_path / 'run.log').read_text().splitlines()
                if 'no weight decay on' in li)
    names = {id(p): n for n, p in model.named_parameters()}
    no_wd = sorted(names[id(p)] for g in wrapper.optimizer.param_groups if g['weight_decay'] == 0
                   for p in g['params'])
    decayed = [names[id(p)] for g in wrapper.optimizer.param_groups if g['weight_decay'] > 0
               for p in g['params']]
    listed = line.split(f'no weight decay on {len(no_wd)} parameters: ')[1]
    patterns = [re.sub(r' \(\d+\)$', '', item) for item in listed.split(', ')]

    def matches(name):
        return [p for p in patterns if re.fullmatch(re.escape(p).replace(r'\*', r'\d+'), name)]
    assert no_wd and all(matches(n) for n in no_wd), (no_wd, listed)
    assert decayed and not any(matches(n) for n in decayed), listed
    counts = [int(c) for c in re.findall(r'\((\d+)\)', listed)]
    assert sum(counts) + sum(1 for item in listed.split(', ') if '(' not in item) == len(no_wd)


def groups_by_name(wrapper, model):
    """``{parameter name: its param group}``."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g for g in wrapper.optimizer.param_groups for p in g['params']}


class NormWithChild(nn.LayerNorm):  # a norm layer holding another module: only its own are norm's
    def __init__(self):
        super().__init__(4)
        self.proj = nn.Linear(4, 4)


def test_decay_rule_order_and_defaults():
    from addp_mm.engine.optimizers.layer_decay import decay_rule
    flat, mat = torch.zeros(3), torch.zeros(3, 3)
    custom = dict(custom_keys={'qkv': dict(decay_mult=0.5), 'blocks.1': dict(lr_mult=0.1),
                               'head': dict(decay_mult=0.25, lr_mult=3.0)})
    # the longest fragment wins (not the last in order); a key's missing mult is 1
    assert decay_rule('backbone.blocks.1.attn.qkv.weight', mat, False, custom) == (1.0, 0.1)
    assert decay_rule('backbone.blocks.0.attn.qkv.weight', mat, False, custom) == (0.5, 1.0)
    assert decay_rule('head.fc.bias', flat, False, custom) == (0.25, 3.0)  # before any 1-d rule
    default = ('pos_embed',)
    assert decay_rule('backbone.pos_embed', mat, False, {}, default) == (0.0, 1.0)
    assert decay_rule('backbone.pos_embed', mat, False, {'no_decay_names': ()}, default) == (1., 1.)
    mults = dict(norm_decay_mult=0.3, bias_decay_mult=0.2, flat_decay_mult=0.4)
    assert decay_rule('backbone.norm.bias', flat, True, mults) == (0.3, 1.0)  # norm before bias
    assert decay_rule('backbone.blocks.0.attn.qkv.bias', flat, False, mults) == (0.2, 1.0)
    assert decay_rule('bias', flat, False, mults) == (0.2, 1.0)  # a top-level parameter
    assert decay_rule('backbone.gamma_bias', flat, False, mults) == (0.4, 1.0)  # not a 'bias'
    assert decay_rule('backbone.norm.weight', flat, True, dict(flat_decay_mult=0.4)) == (0.4, 1.0)
    assert decay_rule('backbone.norm.weight', flat, True, {}) == (0.0, 1.0)  # 1-d: 0 by default
    assert decay_rule('backbone.blocks.0.attn.qkv.bias', mat, False, mults) == (0.2, 1.0)
    assert decay_rule('backbone.blocks.0.attn.qkv.weight', mat, False, mults) == (1.0, 1.0)


def test_layer_decay_groups_of_a_bare_backbone_and_of_a_model_without_depths():
    from addp_mm.errors import UsageError
    from addp_mm.engine.optimizers.layer_decay import _by_pattern
    vit = ADDPViT(arch=TINY, img_size=32, patch_size=8)  # get_layer_depth on the model itself
    groups = groups_by_name(build(0.65, custom_keys={'blocks.2': dict(lr_mult=0.1)})(vit), vit)
    L = 4 + 2
    for name, depth, mult in (('blocks.3.attn.qkv.weight', 4, 1.), ('pos_embed', 0, 1.),
                              ('blocks.2.mlp.fc1.weight', 3, .1), ('norm.weight', L - 1, 1.)):
        g = groups[name]
        assert g['layer_depth'] == depth, name
        assert g['lr'] == pytest.approx(0.65 ** (L - 1 - depth) * mult), name
        assert g['lr_scale'] == pytest.approx(0.65 ** (L - 1 - depth) * mult), name
    assert groups['pos_embed']['weight_decay'] == 0.0  # the default no-decay names
    # no get_layer_depth anywhere: depth 0, full lr
    model = nn.Sequential(nn.Linear(2, 2), NormWithChild())
    groups = groups_by_name(build(1.0, norm_decay_mult=0.5)(model), model)
    assert {n: (g['layer_depth'], g['lr'], g['weight_decay']) for n, g in groups.items()} == {
        '0.weight': (0, 1.0, 0.05), '0.bias': (0, 1.0, 0.0), '1.weight': (0, 1.0, 0.025),
        '1.bias': (0, 1.0, 0.025), '1.proj.weight': (0, 1.0, 0.05), '1.proj.bias': (0, 1.0, 0.0)}
    # no layer_decay_rate (a paramwise_cfg without keys would skip add_params): rate 1; no weight
    # decay in the optimizer: 0 for all
    wrapper = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(flat_decay_mult=0.5),
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.5))))(vit)
    assert {(g['lr'], g['weight_decay']) for g in wrapper.optimizer.param_groups} == {(0.5, 0.0)}
    with pytest.raises(UsageError, match=r"^LayerDecayOptimWrapperConstructor: no submodule has "
                       r"get_layer_depth\(\); use a backbone such as ADDPViT or set "
                       r"layer_decay_rate=1.0$"):
        build(0.7)(model)
    with pytest.raises(UsageError, match=r"unknown paramwise_cfg keys \['decay_rate'\]; the keys "
                       r"are \['layer_decay_rate', 'custom_keys'"):
        build(1.0, decay_rate=0.7)(model)
    assert _by_pattern([]) == 'none'
    assert (_by_pattern(['b.0.w', 'b.1.w', 'c', 'd.0.x', 'd.1.x', 'd.2.x'])
            == 'b.*.w (2), c, d.*.x (3)')


def test_the_log_rounds_lr_scales_to_six_decimals(tmp_path):
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('layer_decay_scales_test', log_file=str(tmp_path / 'run.log'))
    build(0.65)(ADDPViT(arch=TINY, img_size=32, patch_size=8))
    for handler in logger.handlers:
        handler.flush()
    assert ('lr scales [0.116029, 0.178506, 0.274625, 0.4225, 0.65, 1.0]'
            in (tmp_path / 'run.log').read_text())
