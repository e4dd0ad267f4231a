"""Pretraining parts: mask schedule, decoder, soft-target loss (their reference rows:
tests/test_verify_reference.py)."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS, TASK_UTILS

from addp_mm.models.heads import ADDPSoftTargetLoss, soft_target_cross_entropy
from addp_mm.models.necks import ADDPDecoder
from addp_mm.models.target_generators import MaskSchedule
from addp_mm.models.utils.masking import masked_positions, masks_from_noise
from addp_mm.checkpoint import RELEASE_DECODER_DROPPED, release_decoder_state_dict


# ----------------------------------------------------------------------------------------------
# mask schedule
# ----------------------------------------------------------------------------------------------
def test_schedule_ratios_and_probs():
    s = MaskSchedule()
    assert s.ratios.dtype == torch.float32 and s.probs.dtype == torch.float64
    assert len(s) == 66 and s.probs.shape == s.ratios.shape
    assert bool((s.ratios[1:] > s.ratios[:-1]).all())
    assert float(s.ratios.min()) >= 0.5 and float(s.ratios.max()) < 1.0
    assert math.isclose(float(s.probs.sum()), 1.0, abs_tol=1e-12)
    # the kept ratios are exactly the cosine-schedule values in [0.5, 1)
    k = torch.arange(101, dtype=torch.float32) / 100
    cos = torch.cos(math.pi / 2 * k)
    assert torch.equal(s.ratios, cos[(cos >= 0.5) & (cos < 1.0)].flip(0))
    # mode of the truncated normal near mu = 0.55
    assert abs(float(s.ratios[s.probs.argmax()]) - 0.55) < 0.02
    assert TASK_UTILS.build(dict(type='MaskSchedule', mu=0.6)).mu == 0.6


def test_schedule_step_frequencies_and_gap():
    s = MaskSchedule()
    g = torch.Generator().manual_seed(0)
    n = 20000
    steps = [s.sample_steps(g) for _ in range(n)]
    first = torch.tensor([i for i, _ in steps])
    freq = torch.bincount(first, minlength=len(s)).double() / n
    assert float((freq - s.probs).abs().max()) < 0.006  # ~5 sigma of a 0.028 bin
    last = len(s) - 1
    gaps = torch.tensor([j - i for i, j in steps])
    nexts = torch.tensor([j for _, j in steps])
    assert bool((nexts == torch.clamp(first + gaps, max=last)).all())
    assert bool((nexts <= last).all())
    free = first + 5 <= last  # the cap cannot bite: gap is uniform on 1..5
    assert set(gaps[free].tolist()) == {1, 2, 3, 4, 5}
    counts = torch.bincount(gaps[free], minlength=6)[1:].double() / int(free.sum())
    assert float((counts - 0.2).abs().max()) < 0.02
    capped = first + 5 > last
    assert bool((nexts[capped & (first == last)] == last).all())


@pytest.mark.parametrize('num_tokens', [256, 196, 7])
def test_schedule_masks(num_tokens):
    s = MaskSchedule()
    g = torch.Generator().manual_seed(1)
    allowed = {math.ceil(num_tokens * float(r)) for r in s.ratios}
    for _ in range(200):
        m, m_next = s.sample(4, num_tokens, generator=g)
        assert m.shape == m_next.shape == (4, num_tokens) and m.dtype == torch.float32
        assert set(m.unique().tolist()) <= {0., 1.}
        n_t, n_next = m.sum(1), m_next.sum(1)
        assert bool((n_t == n_t[0]).all()) and bool((n_next == n_next[0]).all())
        assert int(n_t[0]) in allowed and int(n_next[0]) in allowed
        assert int(n_next[0]) >= int(n_t[0])
        assert bool((m_next >= m).all())  # nesting
    # counts: ceil(N * r) for every ratio
    for step, r in enumerate(s.ratios):
        assert s.num_masked(num_tokens, step) == math.ceil(num_tokens * float(r))
    # per-sample noise: rows differ
    m, _ = s.sample(8, num_tokens, generator=torch.Generator().manual_seed(2))
    if num_tokens > 8:
        assert len({tuple(r.tolist()) for r in m}) > 1


def test_schedule_masks_from_noise_and_determinism():
    noise = torch.tensor([[0.3, 0.1, 0.9, 0.5, 0.2]])
    m, m_next = masks_from_noise(noise, (2, 4))
    assert m.tolist() == [[0., 1., 0., 0., 1.]]
    assert m_next.tolist() == [[1., 1., 0., 1., 1.]]
    s = MaskSchedule()
    a = s.sample(3, 256, generator=torch.Generator().manual_seed(5))
    b = s.sample(3, 256, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # draw(): the same masks and their counts, known on the host
    d = s.draw(3, 256, generator=torch.Generator().manual_seed(5))
    assert torch.equal(d.mask_t, a[0]) and torch.equal(d.mask_next, a[1])
    assert isinstance(d.num_masked_t, int) and d.mask_t.sum(1).tolist() == [d.num_masked_t] * 3
    assert d.mask_next.sum(1).tolist() == [d.num_masked_next] * 3
    # without a generator: the step from the seeded default generator, noise on the device
    torch.manual_seed(7)
    e = s.draw(2, 64, device='meta')
    assert e.mask_t.device.type == 'meta' and 0 < e.num_masked_t <= e.num_masked_next <= 64


# ----------------------------------------------------------------------------------------------
# decoder
# ----------------------------------------------------------------------------------------------
def _tiny_decoder(**kw):
    cfg = dict(embed_dim=32, decoder_embed_dim=32, depth=2, num_heads=4, num_patches=16,
               vocab_size=8 + 3 + 1, codebook_size=8, drop=0.)
    cfg.update(kw)
    return ADDPDecoder(**cfg)


def _inputs(B=2, N=16, n_masked=10, C=32, vocab=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    enc = torch.randn(B, N + 1, C, generator=g)
    idx = torch.randint(0, vocab, (B, N), generator=g)
    noise = torch.rand(B, N, generator=g)
    mask, = masks_from_noise(noise, (n_masked, ))
    return enc, idx, mask


def test_decoder_shapes_and_registry():
    dec = MODELS.build(dict(type='ADDPDecoder', embed_dim=32, decoder_embed_dim=32, depth=1,
                            num_heads=2, num_patches=16, vocab_size=12, codebook_size=8))
    assert isinstance(dec, ADDPDecoder) and dec.mask_token_id == 11
    dec = _tiny_decoder().eval()
    enc, idx, mask = _inputs()
    L = 1 + 16 + 6
    assert dec.embed(enc, idx, mask).shape == (2, L, 32)
    # the whole sequence (what the release scores), and what a caller asks for
    hidden = dec.features(enc, idx, mask)
    full = dec.score(hidden)
    assert hidden.shape == (2, L, 32) and full.shape == (2, L, 12)
    logits = dec(enc, idx, mask)
    assert logits.shape == (2, 16, 12)
    torch.testing.assert_close(logits, full[:, 1:17], rtol=0, atol=1e-6)
    codes = dec(enc, idx, mask, num_codes=8)
    torch.testing.assert_close(codes, full[:, 1:17, :8], rtol=0, atol=1e-6)
    positions = masked_positions(mask, 10)
    picked = dec(enc, idx, mask, positions=positions)
    torch.testing.assert_close(picked, logits.gather(1, positions[..., None].expand(-1, -1, 12)),
                               rtol=0, atol=1e-6)
    # the visible count given by the caller (pretraining) gives the same result
    assert torch.equal(dec(enc, idx, mask, num_visible=6), logits)
    with pytest.raises(ValueError, match='same number of visible'):
        bad = mask.clone()
        bad[0, mask[0].argmin()] = 1.
        dec(enc, idx, bad)
    with pytest.raises(ValueError, match='16'):
        dec(enc[:, :10], idx[:, :9], mask[:, :9])


def test_decoder_dim_mismatch():
    with pytest.raises(ValueError, match='decoder_pos_mask_embed'):
        _tiny_decoder(decoder_embed_dim=16)
    with pytest.raises(ValueError, match='num_patches'):
        ADDPDecoder(embed_dim=32, codebook_size=8)
    assert ADDPDecoder(embed_dim=32, depth=1, num_heads=2, num_patches=4, codebook_size=8,
                       num_classes=3).vocab_size == 12


def test_decoder_reads_only_visible_information():
    dec = _tiny_decoder().eval()
    enc, idx, mask = _inputs()
    ref = dec(enc, idx, mask)
    m = mask.bool()
    enc2, idx2 = enc.clone(), idx.clone()
    enc2[:, 0] += 5.  # cls slot is replaced by the mask token
    enc2[:, 1:][m] += 5.  # masked positions too
    idx2[m] = (idx2[m] + 3) % 8  # tokens are only read where visible
    torch.testing.assert_close(dec(enc2, idx2, mask), ref, rtol=0, atol=0)
    enc3 = enc.clone()
    enc3[:, 1:][~m] += 1.
    assert not torch.allclose(dec(enc3, idx, mask), ref)


def test_decoder_head_uses_detached_embedding():
    dec = _tiny_decoder().train()
    enc, idx, mask = _inputs()
    dec(enc, idx, mask).sum().backward()
    grad = dec.token_emb.weight.grad
    read = set(idx[~mask.bool()].tolist())
    for row in range(dec.vocab_size):
        assert (grad[row].abs().sum() > 0) == (row in read)
    assert dec.mlm_head.bias.grad is not None


def test_release_decoder_state_dict():
    dec = _tiny_decoder()
    ours = dec.state_dict()
    rename = {'pos_embed': 'decoder_pos_embed_learned', 'pos_mask_embed': 'decoder_pos_mask_embed',
              'pos_token_embed': 'decoder_pos_token_embed'}
    release = {}
    for k, v in ours.items():
        head = k.split('.')[0]
        if head == 'blocks':
            k = 'decoder_' + k
        elif head == 'norm':
            k = 'decoder_' + k
        elif head == 'mlm_head':
            k = 'mlm_layer' + k[len('mlm_head'):]
        k = rename.get(k, k)
        release[k] = torch.randn_like(v)
    extra = {k: torch.zeros(1) for k in ['decoder_pos_embed', 'pos_token_embed', 'pos_mask_embed',
                                         'decoder_pred.weight', 'decoder_pred.bias', 'cls_token',
                                         'pos_embed', 'blocks.0.norm1.weight', 'norm.weight',
                                         'vqgan.quantize.embedding.weight',
                                         'token_predictor.token_emb.word_embeddings.weight']}
    mapped = release_decoder_state_dict({**release, **extra})
    assert set(mapped) == set(ours)
    dec.load_state_dict(mapped, strict=True)
    assert torch.equal(dec.pos_embed, release['decoder_pos_embed_learned'])
    assert torch.equal(dec.mlm_head.ln.weight, release['mlm_layer.ln.weight'])
    assert torch.equal(dec.blocks[1].attn.qkv.weight, release['decoder_blocks.1.attn.qkv.weight'])
    assert RELEASE_DECODER_DROPPED == ['decoder_pos_embed', 'decoder_pred', 'pos_token_embed',
                                       'pos_mask_embed']


# ----------------------------------------------------------------------------------------------
# loss
# ----------------------------------------------------------------------------------------------
def _release_loss(probs_bkhw, logits, mask, eps):
    """The release's forward_loss, written out for the test (padded mask, B x K x h x w)."""
    B, S, V = logits.shape
    _, K, h, w = probs_bkhw.shape
    target = torch.cat([probs_bkhw, torch.zeros(B, V - K, h, w)], dim=1)
    grid = logits[:, 1:1 + h * w].reshape(B, h, w, V).permute(0, 3, 1, 2)
    per = nn.CrossEntropyLoss(reduction='none', label_smoothing=eps)(grid, target).reshape(B, h * w)
    padded = torch.cat([torch.zeros(B, 1), mask], dim=1)
    return (per * padded[:, 1:]).sum() / padded[:, 1:].sum()


def test_loss_hand_computation():
    # B=1, N=2 grid positions, K=2 codes, vocab 3; position 0 is scored
    logits = torch.tensor([[[1., 2., 3.]]])
    probs = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])  # B x N x K
    positions = torch.tensor([[0]])
    eps = 0.1
    x = [1., 2., 3.]
    lse = math.log(sum(math.exp(v) for v in x))
    t = [0.25 * (1 - eps) + eps / 3, 0.75 * (1 - eps) + eps / 3, eps / 3]
    expected = -sum(ti * (xi - lse) for ti, xi in zip(t, x))
    got = soft_target_cross_entropy(logits, probs, positions, label_smoothing=eps)
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    # the B x K x h x w layout gives the same value; position 1 another one
    got4 = soft_target_cross_entropy(logits, probs.transpose(1, 2).reshape(1, 2, 1, 2), positions,
                                     label_smoothing=eps)
    assert float(got4) == float(got)
    assert float(soft_target_cross_entropy(logits, probs, torch.tensor([[1]]))) != float(got)
    # registered module with loss_weight
    loss = MODELS.build(dict(type='ADDPSoftTargetLoss', label_smoothing=eps, loss_weight=2.))
    assert isinstance(loss, ADDPSoftTargetLoss)
    assert math.isclose(float(loss(logits, probs, positions)), 2 * expected, rel_tol=1e-6)
    with pytest.raises(ValueError, match='positions'):
        soft_target_cross_entropy(logits, probs, torch.tensor([[0, 1]]))


def test_loss_equals_release_formula():
    """The loss at the masked positions (the decoder scores only those) equals the release's
    loss on the whole sequence's logits with the mask."""
    g = torch.Generator().manual_seed(3)
    B, h, w, K, V, extra = 2, 4, 4, 8, 12, 5
    N = h * w
    logits = torch.randn(B, 1 + N + extra, V, generator=g) * 3
    probs = torch.softmax(torch.randn(B, K, h, w, generator=g) * 2, dim=1)
    mask, = masks_from_noise(torch.rand(B, N, generator=g), (extra + 4, ))
    positions = masked_positions(mask, extra + 4)
    picked = logits[:, 1:1 + N].gather(1, positions[..., None].expand(-1, -1, V))
    ours = soft_target_cross_entropy(picked, probs, positions, label_smoothing=0.1)
    torch.testing.assert_close(ours, _release_loss(probs, logits, mask, 0.1), rtol=1e-6, atol=1e-6)
    assert bool((mask.gather(1, positions) == 1).all())  # exactly the masked ones, in order
    assert bool((positions.diff(dim=1) > 0).all())
