"""VQGAN tokenizer: shape contracts, strict loading (in init_weights), frozen inside the noiser
(its reference rows: tests/test_verify_reference.py)."""
import argparse

import pytest
import torch

from addp_mm.models.target_generators import VQGANTokenizer
from addp_mm.checkpoint import read_checkpoint, unwrap_state_dict, vqgan_state_dict
from verification.tokenizers import vqgan_config_from_yaml, vqgan_from_yaml

TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=16, embed_dim=16, n_embed=24,
            resolution=32)


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """The models here are tiny: one thread avoids OpenMP overhead on small shared machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(TINY)
    cfg.update(kw)
    return VQGANTokenizer(**cfg)


def loaded(**kw):
    """A tokenizer whose checkpoint is read, as a parent's init_weights() does."""
    m = tiny(**kw)
    m.init_weights()
    return m


def perturb(model, seed=1):
    """Random weights that make every parameter non-trivial (GroupNorm affine, biases, codebook)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


# ---------------------------------------------------------------------------------------------
# architecture / layout

def test_state_dict_layout_default_config():
    m = VQGANTokenizer()  # release config: ch 128, ch_mult (1,1,2,2,4), 2 blocks per level
    sd = m.state_dict()
    assert sd['encoder.conv_in.weight'].shape == (128, 3, 3, 3)
    assert 'encoder.conv_in.bias' not in sd
    assert sd['encoder.down.4.block.0.nin_shortcut.weight'].shape == (512, 512, 1, 1)
    assert 'encoder.down.4.block.1.nin_shortcut.weight' not in sd
    assert 'encoder.down.0.block.0.conv1.bias' not in sd
    assert sd['encoder.conv_out.weight'].shape == (256, 512, 1, 1)
    assert sd['decoder.conv_in.weight'].shape == (512, 256, 3, 3)
    assert 'decoder.conv_in.bias' in sd
    assert 'decoder.up.0.upsample.conv.weight' not in sd
    assert sd['decoder.up.4.upsample.conv.weight'].shape == (512, 512, 3, 3)
    assert sd['decoder.up.3.block.0.conv1.weight'].shape == (256, 512, 3, 3)
    assert 'decoder.up.3.block.2.conv1.weight' not in sd  # num_res_blocks, not +1 as in taming
    assert sd['decoder.conv_out.weight'].shape == (3, 128, 3, 3)
    assert sd['quantize.embedding.weight'].shape == (1024, 256)
    assert not any('attn' in k or 'quant_conv' in k or 'downsample' in k for k in sd)
    assert m.downsample_factor == 16 and m.grid_size(256) == (16, 16)
    assert m.grid_size((64, 96)) == (4, 6)


@pytest.mark.parametrize('kw', [dict(ch=48), dict(ch=32, ch_mult=(1, 1.5)),
                                dict(ch_mult=(1, 3, 0))])
def test_bad_channel_counts(kw):
    cfg = dict(TINY)
    cfg.update(kw)
    with pytest.raises(ValueError, match=r'ch=.*ch_mult='):
        VQGANTokenizer(**cfg)


def test_z_channels_must_equal_embed_dim():
    with pytest.raises(ValueError, match='embed_dim'):
        tiny(z_channels=32)


def test_registered():
    from mmengine.registry import MODELS
    m = MODELS.build(dict(type='VQGANTokenizer', **TINY))
    assert isinstance(m, VQGANTokenizer)


# ---------------------------------------------------------------------------------------------
# shapes and the quantizer

@pytest.mark.parametrize('hw,kw', [((16, 16), {}), ((8, 12), {}), ((12, 8), {}),
                                   ((64, 96), dict(ch_mult=(1, 1, 1, 1, 2)))])
def test_encode_decode_shapes(hw, kw):
    m = perturb(tiny(**kw))
    x = torch.rand(2 if not kw else 1, 3, *hw)
    b = x.shape[0]
    with torch.no_grad():
        z = m.encode_latent(x)
        z_q, idx = m.encode(x)
        rec = m.decode(z_q)
    h, w = m.grid_size(hw)
    assert z.shape == z_q.shape == (b, 16, h, w)
    assert idx.shape == (b, h * w) and idx.dtype == torch.int64
    assert rec.shape == (b, 3, *hw)
    # raster order: indices[b, w*r + c] is the code at (r, c)
    assert torch.allclose(m.embed_indices(idx, (h, w)), z_q, atol=1e-6)
    assert torch.equal(m.embed_indices(idx.view(b, h, w)), m.embed_indices(idx, (h, w)))
    # nearest code, checked in float64
    flat = z.permute(0, 2, 3, 1).reshape(-1, 16).double()
    d = torch.cdist(flat, m.codebook.double())
    assert torch.equal(d.argmin(1), idx.reshape(-1))
    assert torch.equal(m.decode_indices(idx, (h, w)), m.decode(m.embed_indices(idx, (h, w))))


def test_straight_through_gradient():
    m = perturb(tiny())
    z = torch.randn(1, 16, 2, 3, requires_grad=True)
    z_q, _ = m.quantize(z)
    z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    assert all(p.grad is None for p in m.parameters())


def test_bad_input_sizes():
    m = tiny()
    with pytest.raises(ValueError, match='divisible'):
        m.encode(torch.rand(1, 3, 9, 8))
    with pytest.raises(ValueError):
        m.decode(torch.rand(1, 8, 2, 2))
    with pytest.raises(ValueError, match='square'):
        m.embed_indices(torch.zeros(1, 6, dtype=torch.long))


def test_soft_embed_one_hot_equals_lookup():
    m = perturb(tiny())
    idx = torch.randint(0, 24, (2, 4 * 6))
    probs = torch.nn.functional.one_hot(idx, 24).float().view(2, 4, 6, 24).permute(0, 3, 1, 2)
    assert torch.allclose(m.soft_embed(probs), m.embed_indices(idx, (4, 6)), atol=1e-6)
    # uniform distribution -> mean code
    uni = torch.full((1, 24, 1, 1), 1 / 24)
    assert torch.allclose(m.soft_embed(uni)[0, :, 0, 0], m.codebook.mean(0), atol=1e-6)
    with pytest.raises(ValueError):
        m.soft_embed(torch.rand(1, 23, 2, 2))


# ---------------------------------------------------------------------------------------------
# frozen behaviour

def test_frozen_and_always_eval_inside_the_noiser():
    from mmengine.registry import MODELS
    noiser = MODELS.build(dict(type='ADDPNoiser', tokenizer=dict(type='VQGANTokenizer', **TINY, dropout=0.5)))
    m = noiser.tokenizer
    assert not m.training
    assert not any(p.requires_grad for p in m.parameters())
    noiser.train()
    assert not m.training and not any(mod.training for mod in m.modules())
    parent = torch.nn.Sequential(noiser)
    parent.train()
    assert not m.training
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(m.decode(m.encode(x)[0]), m.decode(m.encode(x)[0]))  # dropout off
    assert parent.state_dict() == {}  # frozen weights are never saved


# ---------------------------------------------------------------------------------------------
# loading

def test_strict_loading_layouts(tmp_path):
    src = perturb(tiny())
    sd = src.state_dict()
    # MAGE layout
    mage = tmp_path / 'vqgan.ckpt'
    torch.save({'state_dict': sd}, mage)
    # ADDP release layout, with a pickled argparse.Namespace and other keys
    release = tmp_path / 'addp.pth'
    model = {'blocks.0.norm1.weight': torch.ones(4)}
    model.update({f'vqgan.{k}': v for k, v in sd.items()})
    model.update({f'token_predictor.vqgan.{k}': v + 1 for k, v in sd.items()})
    torch.save({'model': model, 'epoch': 0, 'args': argparse.Namespace(a=1)}, release)
    for ckpt in (str(mage), release, {'state_dict': sd}, sd):
        assert not torch.equal(tiny(checkpoint=ckpt).codebook, sd['quantize.embedding.weight'])
        m = loaded(checkpoint=ckpt)
        for k, v in m.state_dict().items():
            assert torch.equal(v, sd[k]), k
    # a parent's initialiser overwrote the weights: init_weights() restores the checkpoint
    m = loaded(checkpoint=str(mage))
    with torch.no_grad():
        m.decoder.conv_out.weight.zero_()
    m.init_weights()
    assert torch.equal(m.decoder.conv_out.weight, sd['decoder.conv_out.weight'])
    tp = vqgan_state_dict(unwrap_state_dict(read_checkpoint(str(release))), prefix='token_predictor.vqgan.')
    assert torch.equal(tp['quantize.embedding.weight'], sd['quantize.embedding.weight'] + 1)


def test_strict_loading_rejects_mismatch(tmp_path):
    sd = tiny().state_dict()
    missing = dict(sd)
    missing.pop('decoder.conv_out.bias')
    with pytest.raises(RuntimeError, match='conv_out.bias'):
        loaded(checkpoint=missing)
    extra = dict(sd)
    extra['encoder.down.0.attn.0.q.weight'] = torch.zeros(1)
    with pytest.raises(RuntimeError, match='attn'):
        loaded(checkpoint=extra)
    with pytest.raises(RuntimeError, match='ch_mult'):
        loaded(ch=64, checkpoint=sd)
    with pytest.raises(KeyError, match='no VQGAN weights'):
        vqgan_state_dict({'blocks.0.w': torch.zeros(1)})


def test_missing_checkpoint_message(tmp_path):
    path = str(tmp_path / 'vqgan_jax_strongaug.ckpt')
    m = tiny(checkpoint=path)  # building reads no file
    with pytest.raises(FileNotFoundError) as e:
        m.init_weights()
    msg = str(e.value)
    assert path in msg and 'vqgan_jax_strongaug.ckpt' in msg and 'MAGE' in msg


def test_from_yaml(tmp_path):
    y = tmp_path / 'vqgan_tiny.yaml'
    y.write_text("""model:
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 16
    n_embed: 24
    ddconfig:
      double_z: False
      z_channels: 16
      resolution: 32
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 2]
      num_res_blocks: 1
      attn_resolutions: [16]
      dropout: 0.0
""")
    cfg = vqgan_config_from_yaml(str(y))
    assert cfg['ch_mult'] == (1, 2) and cfg['n_embed'] == 24
    src = perturb(tiny())
    ck = tmp_path / 'w.ckpt'
    torch.save({'state_dict': src.state_dict()}, ck)
    m = vqgan_from_yaml(str(y), checkpoint=str(ck))
    assert torch.equal(m.codebook, src.codebook)
    with pytest.raises(FileNotFoundError):
        vqgan_from_yaml(str(tmp_path / 'nope.yaml'))
