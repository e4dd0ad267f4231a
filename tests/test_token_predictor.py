"""MAGE token predictor: tiny random configs, loading (in init_weights), frozen inside the noiser
(its reference rows: tests/test_verify_reference.py)."""
import argparse

import pytest
import torch
from mmengine.registry import MODELS

from addp_mm.models.target_generators import MAGETokenPredictor
from addp_mm.checkpoint import mage_state_dict, read_checkpoint, unwrap_state_dict

# 16 codes + 100 class slots + mask: the default fake class id 16 + 76 = 92 is a class slot
TINY = dict(embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
            decoder_num_heads=4, codebook_size=16, num_classes=100, grid_size=4, patch_size=4)


def tiny(**kw):
    torch.manual_seed(0)
    return MAGETokenPredictor(**{**TINY, **kw})


def loaded(**kw):
    """A token predictor whose checkpoint is read, as a parent's init_weights() does."""
    m = MAGETokenPredictor(**{**TINY, **kw})
    m.init_weights()
    return m


def random_inputs(B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 16, (B, 16), generator=g)
    rank = torch.rand(B, 16, generator=g).argsort(dim=1).argsort(dim=1)
    return idx, (rank < 8).float(), (rank < 12).float()  # mask_t, mask_t_next (superset)


def test_vocabulary():
    m = tiny()
    assert (m.vocab_size, m.mask_token_label, m.fake_class_label) == (117, 116, 92)
    assert m.token_emb.word_embeddings.weight.shape == (117, 32)
    assert m.mlm_layer.bias.shape == (1, 1, 117)
    assert m.token_emb.position_ids.shape == (1, 17)
    release = MAGETokenPredictor(32, 1, 2, 32, 1, 4)  # release vocabulary sizes
    assert (release.vocab_size, release.mask_token_label, release.fake_class_label) == \
        (2025, 2024, 1100)
    with pytest.raises(ValueError, match='fake_class_label'):
        tiny(num_classes=5)  # 92 is outside a 22-id vocabulary


def test_shapes_and_probabilities():
    m = tiny()
    idx, mask_t, _ = random_inputs()
    p = m(idx, mask_t)
    assert p.shape == (3, 16, 4, 4) and p.dtype == torch.float32
    torch.testing.assert_close(p.sum(1), torch.ones(3, 4, 4))
    assert (p >= 0).all()
    torch.testing.assert_close(m(idx.view(3, 4, 4), mask_t.bool().view(3, 4, 4)), p)
    with pytest.raises(ValueError, match='shape'):
        m(idx[:, :10], mask_t[:, :10])
    # non-square grid
    r = tiny(grid_size=(2, 3))
    assert r(idx[:, :6], mask_t[:, :6]).shape == (3, 16, 2, 3)


def test_masked_ids_are_hidden_and_mask_token_unused():
    m = tiny()
    idx, mask_t, _ = random_inputs()
    p = m(idx, mask_t)
    other = torch.where(mask_t.bool(), (idx + 5) % 16, idx)
    torch.testing.assert_close(m(other, mask_t), p, rtol=0, atol=0)
    m.mask_token.data.normal_()   # pad_with_cls_token: the decoder fills with the cls output
    m.decoder_pred.weight.data.normal_()
    m.patch_embed.proj.weight.data.normal_()
    torch.testing.assert_close(m(idx, mask_t), p, rtol=0, atol=0)
    assert not torch.allclose(m(idx, torch.zeros_like(mask_t)), p)


def test_batched_predict_equals_separate_calls():
    m = tiny()
    idx, mask_t, mask_next = random_inputs()
    p_t, p_next = m.predict(idx, [mask_t, mask_next])
    torch.testing.assert_close(p_t, m(idx, mask_t), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(p_next, m(idx, mask_next), rtol=1e-5, atol=1e-7)
    assert m.predict(idx, []) == []
    assert len(m.predict(idx, [mask_t])) == 1


def test_frozen_inside_the_noiser():
    noiser = MODELS.build(dict(
        type='ADDPNoiser', token_predictor=dict(type='MAGETokenPredictor', **TINY),
        tokenizer=dict(type='VQGANTokenizer', ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, z_channels=8,
                       embed_dim=8, n_embed=16, resolution=16)))
    m = noiser.token_predictor
    assert isinstance(m, MAGETokenPredictor)
    assert not any(p.requires_grad for p in m.parameters())
    noiser.train()
    assert not any(mod.training for mod in m.modules())
    idx, mask_t, _ = random_inputs()
    with torch.enable_grad():
        p = m(idx, mask_t)
    assert not p.requires_grad and p.grad_fn is None


def fake_vqgan_entries(prefix=''):
    return {f'{prefix}vqgan.quantize.embedding.weight': torch.randn(16, 8),
            f'{prefix}vqgan.encoder.conv_in.weight': torch.randn(4, 3, 3, 3)}


def test_strict_loading_mage_and_addp_layouts(tmp_path):
    src = tiny()
    src.decoder_pos_embed_learned.data.normal_()
    src.mlm_layer.bias.data.normal_()
    state = src.state_dict()
    idx, mask_t, _ = random_inputs()
    expected = src(idx, mask_t)

    mage = tmp_path / 'mage.pth'
    torch.save({'model': {**state, **fake_vqgan_entries()}}, mage)
    addp = tmp_path / 'addp.pth'
    torch.save({'model': {'blocks.0.norm1.weight': torch.ones(3), **fake_vqgan_entries(),
                          **{f'token_predictor.{k}': v for k, v in state.items()},
                          **fake_vqgan_entries('token_predictor.')},
                'epoch': 0, 'args': argparse.Namespace(model='x')}, addp)
    for path in (mage, addp):
        torch.manual_seed(123)  # a different random init before loading
        m = loaded(checkpoint=str(path))
        torch.testing.assert_close(m(idx, mask_t), expected, rtol=0, atol=0)
        assert set(mage_state_dict(unwrap_state_dict(read_checkpoint(str(path))))) == set(state)

    # init_weights() (what a parent BaseModule calls last) restores the checkpoint
    m.blocks[0].attn.qkv.weight.data.zero_()
    m.init_weights()
    torch.testing.assert_close(m(idx, mask_t), expected, rtol=0, atol=0)

    bad = tmp_path / 'bad.pth'
    torch.save({'model': {**state, 'extra.weight': torch.ones(1)}}, bad)
    with pytest.raises(RuntimeError, match='extra.weight'):
        loaded(checkpoint=str(bad))
    with pytest.raises(RuntimeError, match='shape-mismatched keys'):
        loaded(embed_dim=64, checkpoint=str(mage))


def test_mage_state_dict_is_pure():
    w = torch.ones(2)
    mage = {'norm.weight': w, **fake_vqgan_entries()}
    assert mage_state_dict(mage) == {'norm.weight': w}
    assert mage_state_dict(unwrap_state_dict({'model': mage})) == {'norm.weight': w}
    assert len(mage) == 3
    addp = {'norm.weight': torch.zeros(2), 'token_predictor.norm.weight': w,
            **fake_vqgan_entries('token_predictor.'), **fake_vqgan_entries()}
    assert mage_state_dict(addp) == {'norm.weight': w}


def test_missing_checkpoint(tmp_path):
    path = str(tmp_path / 'nowhere' / 'mage-vitb-1600.pth')
    m = MAGETokenPredictor(**TINY, checkpoint=path)  # building reads no file
    with pytest.raises(FileNotFoundError) as info:
        m.init_weights()
    msg = str(info.value)
    assert path in msg and 'mage-vitb-1600.pth' in msg and 'mage-vitl-1600.pth' in msg \
        and 'MAGE' in msg
