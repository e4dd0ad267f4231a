"""The ADDP model, its noiser and its runner: frozen parts, saving, building without files,
non-finite losses, early errors, no host synchronisation in a step."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS

from addp_mm.engine.runner import ADDPPretrainRunner, check_frozen_checkpoints
from addp_mm.engine.optimizers import NonFiniteGuardOptimWrapper, NonFiniteLossError
from addp_mm.models.algorithms import ADDP
from addp_mm.models.target_generators import ADDPNoiser

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
IMG = 64  # 64x64 pixels -> 4x4 token grid (VQGAN downsamples by 16)


def tiny_cfg():
    return dict(
        type='ADDP',
        backbone=dict(type='ADDPViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                      img_size=IMG, patch_size=16, pre_norm=True, final_norm=True, out_type='raw'),
        # embed_dim, num_patches, codebook_size: from the backbone and the tokenizer
        neck=dict(type='ADDPDecoder', depth=1, num_heads=2, num_classes=100, drop=0.0),
        head=dict(type='ADDPSoftTargetLoss'),
        target_generator=dict(
            type='ADDPNoiser',
            tokenizer=dict(type='VQGANTokenizer', ch=32, ch_mult=[1, 1, 1, 1, 1], num_res_blocks=1,
                           z_channels=32, n_embed=64, embed_dim=32, resolution=IMG),
            token_predictor=dict(type='MAGETokenPredictor', embed_dim=32, depth=1, num_heads=2,
                                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                                 num_classes=100),
            mask_schedule=dict(type='MaskSchedule')))


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = MODELS.build(tiny_cfg())
    m.init_weights()
    return m


def test_sizes_come_from_backbone_and_tokenizer(model):
    noiser = model.target_generator
    assert isinstance(noiser, ADDPNoiser)
    assert (model.neck.embed_dim, model.neck.num_patches, model.neck.codebook_size,
            model.neck.vocab_size) == (32, 16, 64, 64 + 100 + 1)
    assert noiser.token_predictor.grid_size == (4, 4) and noiser.token_predictor.codebook_size == 64
    bad = tiny_cfg()
    bad['neck']['num_patches'] = 25
    with pytest.raises(ValueError, match='num_patches=25'):
        MODELS.build(bad)
    bad = tiny_cfg()
    bad['backbone']['patch_size'] = 8
    with pytest.raises(ValueError, match='must coincide'):
        MODELS.build(bad)


def test_loss_and_gradients_only_reach_trained_parts(model):
    model.train()
    noiser = model.target_generator
    assert not any(m.training for m in noiser.modules())
    losses = model.loss(torch.rand(2, 3, IMG, IMG))
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert all(p.grad is None and not p.requires_grad for p in noiser.parameters())
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert model.neck.blocks[0].mlp.fc1.weight.grad is not None


def test_frozen_parts_are_not_saved_and_reload(model):
    sd = model.state_dict()
    assert sd and not any(k.startswith('target_generator.') for k in sd)
    assert any(k.startswith('backbone.') for k in sd) and any(k.startswith('neck.') for k in sd)
    torch.manual_seed(1)
    other = MODELS.build(tiny_cfg())
    frozen = {k: v.clone() for k, v in other.target_generator.frozen_state_dict().items()}
    assert frozen and not torch.equal(frozen['tokenizer.quantize.embedding.weight'],
                                      model.target_generator.tokenizer.codebook)
    result = other.load_state_dict(sd, strict=True)  # frozen keys missing is fine
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k])
    # ... and the frozen weights are the ones it had (they come from their own files)
    for k, v in other.target_generator.frozen_state_dict().items():
        assert torch.equal(v, frozen[k]), k
    # mmengine's loader (load_from / resume) too
    from mmengine.runner.checkpoint import load_state_dict
    load_state_dict(other, sd, strict=True)


def test_masks_nest_and_targets_are_distributions(model):
    state = model.target_generator(torch.rand(3, 3, IMG, IMG))
    assert bool((state['mask_next'] >= state['mask_t']).all())
    assert torch.allclose(state['target'].sum(1), torch.ones(3, 4, 4), atol=1e-5)
    assert state['x_t'].shape == (3, 3, IMG, IMG)
    assert state['num_masked'] == int(state['mask_t'][0].sum())
    # given masks: the same state as the decoder reading the count itself
    torch.manual_seed(0)
    loss = model.loss(torch.rand(2, 3, IMG, IMG), mask_t=state['mask_t'][:2],
                      mask_next=state['mask_next'][:2])['loss']
    assert torch.isfinite(loss)


def test_a_step_reads_nothing_from_the_device(model):
    """No .item(), int/bool(tensor) or data-dependent boolean indexing in a pretraining step:
    such reads wait for the device. On the meta device every one of them raises, so a whole
    step (forward and backward) running there shows there is none; the mask schedule draws its
    step on the host."""
    model = model.to('meta').train()
    loss = model.loss(torch.empty(2, 3, IMG, IMG, device='meta'))['loss']
    loss.backward()
    assert loss.device.type == 'meta'
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None


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
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py'))
    cfg.work_dir = str(tmp_path)
    noiser = cfg.model.target_generator
    noiser.tokenizer.checkpoint = str(tmp_path / 'missing_vqgan.ckpt')
    with pytest.raises(FileNotFoundError,
                       match=r'model\.target_generator\.tokenizer\.checkpoint.*missing_vqgan\.ckpt.*MAGE'):
        ADDPPretrainRunner.from_cfg(cfg)
    noiser.tokenizer.checkpoint = None
    noiser.token_predictor.checkpoint = str(tmp_path / 'no_mage.pth')
    with pytest.raises(FileNotFoundError, match=r'model\.target_generator\.token_predictor\.checkpoint'):
        check_frozen_checkpoints(cfg)


@pytest.mark.parametrize('name', ['pretrain/addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py',
                                  'generation/addp_vit-base-p16_20steps-cosine_in1k-256px.py'])
def test_configs_build_without_their_weights(name, tmp_path):
    """Building a model reads no file; init_weights names the key and the missing file."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))
    noiser = cfg.model.target_generator
    # release file names (the error says where they come from) in a folder that lacks them
    noiser.tokenizer.checkpoint = str(tmp_path / 'vqgan_jax_strongaug.ckpt')
    if noiser.get('token_predictor'):
        noiser.token_predictor.checkpoint = str(tmp_path / 'mage_missing.pth')
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'addp-vit-base-16.pth'))
    with torch.device('meta'):  # the real sizes, without spending time on random weights
        model = MODELS.build(cfg.model)
    assert isinstance(model, ADDP) and model.neck.num_patches == 256
    with pytest.raises(FileNotFoundError, match=r'model\.target_generator\.tokenizer\.checkpoint.*'
                                                r'vqgan_jax_strongaug\.ckpt.*MAGE release'):
        model.init_weights()
    noiser.tokenizer.checkpoint = None
    noiser.token_predictor = None
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    with pytest.raises(FileNotFoundError, match=r'model\.init_cfg\.checkpoint.*addp-vit-base-16\.pth.*ADDP release'):
        model.init_weights()
    # a path of one's own: no release hint
    cfg.model.init_cfg.checkpoint = str(tmp_path / 'my_run' / 'iter_10.pth')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    with pytest.raises(FileNotFoundError, match=r'iter_10\.pth. not found \(looked in .*\)\. Check the path\.$'):
        model.init_weights()


def test_release_configs_build_parts():
    for name in ('addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py', 'addp_vit-large-p16_32xb128-amp-coslr-800e_in1k-256px.py', 'addp_vit-demo-p16_1xb8-300iter_demo-64px.py'):
        cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', name))
        assert cfg.runner_type == 'ADDPPretrainRunner'
        assert cfg.model.target_generator.type == 'ADDPNoiser'
    demo = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', 'addp_vit-demo-p16_1xb8-300iter_demo-64px.py'))
    m = MODELS.build(copy.deepcopy(demo.model))
    assert isinstance(m, ADDP)
    size = demo.img_size
    assert torch.isfinite(m.loss(torch.rand(2, 3, size, size))['loss'])
