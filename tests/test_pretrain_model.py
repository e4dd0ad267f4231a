"""The ADDP model and its runner: frozen parts, saving, non-finite losses, early errors."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS

from addp_mm.engine.runner import ADDPPretrainRunner, check_frozen_checkpoints
from addp_mm.engine.optimizers import NonFiniteGuardOptimWrapper, NonFiniteLossError
from addp_mm.models.pretrain import ADDP

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMG = 64  # 64x64 pixels -> 4x4 token grid (VQGAN downsamples by 16)


def tiny_cfg():
    return dict(
        type='ADDP',
        backbone=dict(type='ADDPViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                      img_size=IMG, patch_size=16, pre_norm=True, final_norm=True, out_type='raw'),
        neck=dict(type='ADDPDecoder', embed_dim=32, decoder_embed_dim=32, depth=1, num_heads=2,
                  num_patches=16, vocab_size=64 + 100 + 1, codebook_size=64, drop=0.0),
        head=dict(type='ADDPSoftTargetLoss'),
        tokenizer=dict(type='VQGANTokenizer', ch=32, ch_mult=[1, 1, 1, 1, 1], num_res_blocks=1,
                       z_channels=32, n_embed=64, embed_dim=32, resolution=IMG),
        token_predictor=dict(type='MAGETokenPredictor', embed_dim=32, depth=1, num_heads=2,
                             decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                             codebook_size=64, num_classes=100, grid_size=4),
        mask_schedule=dict(type='MaskSchedule'))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = MODELS.build(tiny_cfg())
    m.init_weights()
    return m


def test_loss_and_gradients_only_reach_trained_parts(model):
    model.train()
    assert not model.tokenizer.training and not model.token_predictor.training
    losses = model.loss(torch.rand(2, 3, IMG, IMG))
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert all(p.grad is None for p in model.frozen_parameters())
    assert all(not p.requires_grad for p in model.frozen_parameters())
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert model.neck.blocks[0].mlp.fc1.weight.grad is not None


def test_frozen_parts_are_not_saved_and_reload(model):
    sd = model.state_dict()
    assert sd and not any(k.startswith(('tokenizer.', 'token_predictor.')) for k in sd)
    assert any(k.startswith('backbone.') for k in sd) and any(k.startswith('neck.') for k in sd)
    other = MODELS.build(tiny_cfg())
    result = other.load_state_dict(sd, strict=True)  # frozen keys missing is fine
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k])


def test_masks_nest_and_targets_are_distributions(model):
    state = model.noisy_pixels(torch.rand(3, 3, IMG, IMG))
    assert bool((state['mask_next'] >= state['mask_t']).all())
    assert torch.allclose(state['target'].sum(1), torch.ones(3, 4, 4), atol=1e-5)
    assert state['x_t'].shape == (3, 3, IMG, IMG)


@pytest.mark.parametrize('max_consecutive_skips', [0, 1])
def test_non_finite_loss_through_the_real_graph(model, max_consecutive_skips):
    """The pretraining step with the configs' optimizer wrapper: a NaN in the loss (still
    connected to the encoder and decoder) stops (fp32 default) or is skipped without moving the
    weights or AdamW's state."""
    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = NonFiniteGuardOptimWrapper(optimizer=torch.optim.AdamW(params, lr=1e-3),
                                         max_consecutive_skips=max_consecutive_skips)
    data = dict(inputs=[torch.randint(0, 255, (3, IMG, IMG), dtype=torch.uint8)] * 2)
    model.train_step(data, wrapper)  # a good step: AdamW has state now
    before = [p.detach().clone() for p in params], copy.deepcopy(wrapper.optimizer.state_dict()['state'])
    head = model.head.forward
    model.head.forward = lambda *a, **k: head(*a, **k) * float('nan')
    if max_consecutive_skips == 0:
        with pytest.raises(NonFiniteLossError, match='last good'):
            model.train_step(data, wrapper)
    else:
        assert torch.isnan(model.train_step(data, wrapper)['loss'])
    assert all(torch.equal(a, b) for a, b in zip(before[0], params))
    state = wrapper.optimizer.state_dict()['state']
    assert state.keys() == before[1].keys()
    assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(state[i][k]))
               for i in state for k, v in before[1][i].items())


def test_runner_checks_frozen_checkpoints_before_anything(tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-base-p16_1600e_in1k.py'))
    cfg.work_dir = str(tmp_path)
    cfg.model.tokenizer.checkpoint = str(tmp_path / 'missing_vqgan.ckpt')
    with pytest.raises(FileNotFoundError, match=r'model\.tokenizer\.checkpoint.*missing_vqgan\.ckpt.*MAGE'):
        ADDPPretrainRunner.from_cfg(cfg)
    cfg.model.tokenizer.checkpoint = None
    cfg.model.token_predictor.checkpoint = str(tmp_path / 'no_mage.pth')
    with pytest.raises(FileNotFoundError, match=r'model\.token_predictor\.checkpoint'):
        check_frozen_checkpoints(cfg)


def test_release_configs_build_parts():
    for name in ('addp_vit-base-p16_1600e_in1k.py', 'addp_vit-large-p16_800e_in1k.py', 'addp_vit-tiny_demo.py'):
        cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', name))
        assert cfg.runner_type == 'ADDPPretrainRunner'
        assert cfg.model.neck.embed_dim == cfg.model.neck.decoder_embed_dim
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-tiny_demo.py'))
    m = MODELS.build(copy.deepcopy(demo.model))
    assert isinstance(m, ADDP)
    size = demo.img_size
    assert torch.isfinite(m.loss(torch.rand(2, 3, size, size))['loss'])
