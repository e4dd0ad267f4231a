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
