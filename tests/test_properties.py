"""Property-based tests (hypothesis) of the pure functions: the nested masks and their counts,
window partitioning, the position-table resizes, the checkpoint converters' key maps, the nucleus
of top-p sampling and the sampler's schedule.

Each test runs a fixed, derandomised set of examples (the same in every run and in CI) without a
deadline (the machine is shared); the file takes a few seconds on one core."""
import math
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple
from unittest import mock

import numpy as np
import pytest
import torch

from conftest import require

require('hypothesis', 'the property-based tests are written with hypothesis')
from hypothesis import HealthCheck, assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from addp_mm.checkpoint.converters import (addp_state_dict, encoder_state_dict,  # noqa: E402
                                           finetune_classifier_state_dict, mage_state_dict,
                                           model_state_dict, rename_encoder_keys,
                                           timm_vit_state_dict, vqgan_state_dict)
from addp_mm.models.generation.addp_sampler import (SCHEDULES, TEMPERATURE_MODES,  # noqa: E402
                                                    ADDPSampler, nucleus)
from addp_mm.models.layers.pos_embed import resize_pos_embed  # noqa: E402
from addp_mm.models.layers.vit import (get_rel_pos, window_partition,  # noqa: E402
                                       window_unpartition)
from addp_mm.models.utils.masking import (masked_positions, masks_from_noise,  # noqa: E402
                                          num_masked, truncated_normal)

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def exporting():
    """The shape-general branches that the layers take while ``torch.export`` traces."""
    with mock.patch('addp_mm.models.layers.vit.is_exporting', return_value=True), \
            mock.patch('addp_mm.models.layers.pos_embed.is_exporting', return_value=True):
        yield


# ----------------------------------------------------------------------------------------------
# masks: nested masks from one ranking, their counts
# ----------------------------------------------------------------------------------------------
@st.composite
def noise_and_counts(draw):
    B, N = draw(st.integers(1, 3)), draw(st.integers(1, 32))
    # a few repeated values (ties, broken by position) or any float in [0, 1]
    values = st.sampled_from([0., .25, .5, 1.]) | st.floats(0, 1, width=32)
    noise = draw(hnp.arrays(np.float32, (B, N), elements=values))
    counts = draw(st.lists(st.integers(0, N), min_size=1, max_size=4))
    return torch.from_numpy(noise), counts


def noise_rank(noise: np.ndarray) -> np.ndarray:
    """Each position's rank in its row: how many positions have smaller noise, or the same noise
    and a smaller index."""
    a, b = noise[:, None, :], noise[:, :, None]  # [row, position, other]
    other = np.arange(noise.shape[1])
    before = (a < b) | ((a == b) & (other[None, None, :] < other[None, :, None]))
    return before.sum(-1)


@PROPERTY
@given(noise_and_counts())
def test_masks_from_noise_are_nested_exact_and_follow_the_noise(case):
    noise, counts = case
    masks = masks_from_noise(noise, counts)
    rank = noise_rank(noise.numpy())
    assert len(masks) == len(counts)
    for n, mask in zip(counts, masks):
        assert mask.dtype == noise.dtype and mask.shape == noise.shape
        # exactly n per row: the n positions of smallest noise (ties: the earlier position)
        assert mask.sum(1).tolist() == [n] * noise.shape[0]
        assert np.array_equal(mask.numpy(), (rank < n).astype(np.float32))
        # their indices, in position order
        expected = [np.flatnonzero(row) for row in mask.numpy()]
        assert masked_positions(mask, n).tolist() == [e.tolist() for e in expected]
    for (n1, m1), (n2, m2) in zip(zip(counts, masks), zip(counts[1:], masks[1:])):
        small, large = (m1, m2) if n1 <= n2 else (m2, m1)
        assert bool((small <= large).all())  # the smaller mask lies inside the larger


# float32 neighbours of k / N (and k / N itself): where ceil(N * r) changes
@st.composite
def ratio_at_a_boundary(draw):
    N = draw(st.integers(1, 1024))
    r = np.float32(draw(st.integers(0, N)) / N)
    for _ in range(draw(st.integers(-2, 2)) % 5):
        r = np.nextafter(r, np.float32(draw(st.sampled_from([0., 1.]))), dtype=np.float32)
    return N, float(r)


@PROPERTY
@given(st.one_of(ratio_at_a_boundary(),
                 st.tuples(st.integers(0, 4096), st.floats(0, 1)),
                 st.tuples(st.integers(0, 4096), st.floats(0, 1, width=32))))
@example((10, 0.3))  # float32: 3 (3.0000001 rounds to 3); float64 would give 4
def test_num_masked_is_the_float32_ceil(case):
    N, ratio = case
    expected = math.ceil(float(np.float32(N) * np.float32(ratio)))  # numpy's float32 product
    # a ratio drawn by scipy is a numpy float64: it is rounded to float32 too
    for r in (ratio, np.float32(ratio), np.float64(ratio), torch.tensor(ratio, dtype=torch.float32),
              torch.tensor(ratio, dtype=torch.float64)):
        assert num_masked(N, r) == expected
    default = torch.get_default_dtype()
    try:  # and whatever torch's default dtype
        torch.set_default_dtype(torch.float64)
        assert num_masked(N, ratio) == expected
    finally:
        torch.set_default_dtype(default)
    assert 0 <= expected <= N
    if (N, ratio) == (10, 0.3):
        assert math.ceil(N * float(np.float32(ratio))) == 4  # the float64 rule differs here


@PROPERTY
@given(st.integers(0, 4096), st.floats(0, 1), st.floats(0, 1))
def test_num_masked_is_monotone_in_the_ratio(N, r1, r2):
    r1, r2 = min(r1, r2), max(r1, r2)
    assert num_masked(N, r1) <= num_masked(N, r2)
    assert (num_masked(N, 0.), num_masked(N, 1.)) == (0, N)


@PROPERTY
@given(st.floats(-2, 2), st.floats(0.01, 2), st.floats(-1, 1), st.floats(0.05, 1),
       st.floats(0, 1), st.floats(0, 1))
def test_truncated_normal_is_the_normal_on_low_high(low, width, mu, std, u, v):
    high = low + width
    dist = truncated_normal(low, high, mu, std)
    assert dist.support() == pytest.approx((low, high))
    assert (dist.cdf(low), dist.cdf(high)) == pytest.approx((0., 1.), abs=1e-9)
    # inside, the density is the normal's (mean mu, std std) up to one factor
    x, y = low + u * width, low + v * width
    assert math.log(dist.pdf(x) / dist.pdf(y)) == pytest.approx(
        ((y - mu) ** 2 - (x - mu) ** 2) / (2 * std ** 2), rel=1e-6, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# window partition / un-partition
# ----------------------------------------------------------------------------------------------
maps = st.tuples(st.integers(1, 2), st.integers(1, 13), st.integers(1, 13), st.integers(1, 3),
                 st.integers(1, 7))


@PROPERTY
@given(maps)
def test_window_partition_round_trip_padding_and_content(case):
    B, H, W, C, ws = case
    # every value names its position (1-based), the padding is 0
    x = torch.arange(1, B * H * W * C + 1, dtype=torch.float32).view(B, H, W, C)
    windows, (Hp, Wp) = window_partition(x, ws)
    assert (Hp % ws, Wp % ws) == (0, 0) and 0 <= Hp - H < ws and 0 <= Wp - W < ws
    nh, nw = Hp // ws, Wp // ws
    assert windows.shape == (B * nh * nw, ws * ws, C)
    padded = np.zeros((B, Hp, Wp, C), np.float32)
    padded[:, :H, :W] = x.numpy()
    got = windows.numpy()
    for b in range(B):
        for i in range(nh):
            for j in range(nw):
                # window (b, i, j): rows i*ws.., columns j*ws.., raster order inside
                block = padded[b, i * ws:(i + 1) * ws, j * ws:(j + 1) * ws]
                assert np.array_equal(got[(b * nh + i) * nw + j], block.reshape(ws * ws, C))
    assert torch.equal(window_unpartition(windows, ws, (Hp, Wp), (H, W)), x)
    with exporting():  # the traced branches: padding and crop that follow the input's size
        traced, padded_hw = window_partition(x, ws)
        assert padded_hw == (Hp, Wp) and torch.equal(traced, windows)
        assert torch.equal(window_unpartition(traced, ws, padded_hw, (H, W)), x)


# ----------------------------------------------------------------------------------------------
# position tables: resize_pos_embed, get_rel_pos
# ----------------------------------------------------------------------------------------------
grids = st.tuples(st.integers(1, 8), st.integers(1, 8))


@st.composite
def pos_tables(draw):
    extra, (h, w), dst = draw(st.integers(0, 2)), draw(grids), draw(grids)
    C = draw(st.integers(1, 3))
    table = draw(hnp.arrays(np.float32, (1, extra + h * w, C),
                            elements=st.floats(-1, 1, width=32)))
    return torch.from_numpy(table), extra, (h, w), dst


def grid_of(table: torch.Tensor, extra: int, hw: Tuple[int, int]) -> torch.Tensor:
    return table[0, extra:].reshape(hw[0], hw[1], -1)


def table_of(extra_rows: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return torch.cat([extra_rows, grid.reshape(1, -1, grid.shape[-1])], 1)


@PROPERTY
@given(pos_tables())
def test_resize_pos_embed_shapes_class_slots_and_flips(case):
    table, extra, src, dst = case
    out = resize_pos_embed(table, src, dst, num_extra_tokens=extra)
    assert out.shape == (1, extra + dst[0] * dst[1], table.shape[-1]) and out.dtype == table.dtype
    assert torch.equal(out[:, :extra], table[:, :extra])  # the class slots are kept as they are
    grid, cls = grid_of(table, extra, src), table[:, :extra]
    for dim in (0, 1):  # flipping the source grid's rows (columns) flips the result's
        flipped = resize_pos_embed(table_of(cls, grid.flip(dim)), src, dst, num_extra_tokens=extra)
        torch.testing.assert_close(grid_of(flipped, extra, dst),
                                   grid_of(out, extra, dst).flip(dim), atol=1e-5, rtol=1e-5)
    # transposing the grid transposes the result
    transposed = resize_pos_embed(table_of(cls, grid.transpose(0, 1)), src[::-1], dst[::-1],
                                  num_extra_tokens=extra)
    torch.testing.assert_close(grid_of(transposed, extra, dst[::-1]),
                               grid_of(out, extra, dst).transpose(0, 1), atol=1e-5, rtol=1e-5)
    # a constant grid stays constant (the interpolation weights sum to one)
    const = resize_pos_embed(table_of(cls, torch.full_like(grid, 0.5)), src, dst,
                             num_extra_tokens=extra)
    torch.testing.assert_close(grid_of(const, extra, dst),
                               torch.full((dst[0], dst[1], grid.shape[-1]), 0.5))
    with pytest.raises(ValueError, match='slots'):
        resize_pos_embed(table[:, 1:], src, (src[0] + 1, src[1]), num_extra_tokens=extra)


@PROPERTY
@given(pos_tables())
def test_resize_pos_embed_same_grid_is_the_identity(case):
    table, extra, src, _ = case
    assert resize_pos_embed(table, src, src, num_extra_tokens=extra) is table
    with exporting():  # traced: always interpolated, a no-op at the same size
        torch.testing.assert_close(resize_pos_embed(table, src, src, num_extra_tokens=extra),
                                   table, atol=1e-6, rtol=0)


@st.composite
def rel_pos_tables(draw, same_size: bool = False):
    q = draw(st.integers(1, 10))
    k = q if same_size else draw(st.integers(1, 10))
    L = 2 * max(q, k) - 1 if draw(st.booleans()) else draw(st.integers(1, 25))
    C = draw(st.integers(1, 3))
    table = draw(hnp.arrays(np.float32, (L, C), elements=st.floats(-1, 1, width=32)))
    return q, k, torch.from_numpy(table)


@PROPERTY
@given(rel_pos_tables(same_size=True))
def test_get_rel_pos_self_attention(case):
    k, _, table = case
    R = get_rel_pos(k, k, table)
    assert R.shape == (k, k, table.shape[1])
    # one row per offset q - k: constant along the diagonals (a Toeplitz table)
    assert torch.equal(R[1:, 1:], R[:-1, :-1])
    if table.shape[0] == 2 * k - 1:  # the table's own size: row (q - k) + (k - 1), no resize
        for i in range(k):
            for j in range(k):
                assert torch.equal(R[i, j], table[i - j + k - 1])
        with exporting():  # traced: always interpolated, a no-op at the same length
            torch.testing.assert_close(get_rel_pos(k, k, table), R, atol=1e-6, rtol=0)
    # reversing the distances transposes the table (q - k -> k - q)
    torch.testing.assert_close(get_rel_pos(k, k, table.flip(0)), R.transpose(0, 1),
                               atol=1e-5, rtol=1e-5)


@PROPERTY
@given(rel_pos_tables())
def test_get_rel_pos_offsets_stay_in_the_table(case):
    q, k, table = case
    L = 2 * max(q, k) - 1
    assert get_rel_pos(q, k, table).shape == (q, k, table.shape[1])
    # with the distances themselves as the table, the result is the row each pair reads
    rows = get_rel_pos(q, k, torch.arange(L, dtype=torch.float32)[:, None])[..., 0]
    assert float(rows.min()) >= 0 and float(rows.max()) <= L - 1
    assert float(rows[0, k - 1]) == 0  # the farthest key behind the first query: row 0
    assert bool((rows[1:] >= rows[:-1]).all()) and bool((rows[:, 1:] <= rows[:, :-1]).all())


# ----------------------------------------------------------------------------------------------
# the converters' key maps, on random key sets of the released layouts
# ----------------------------------------------------------------------------------------------
BLOCK = [f'{p}.{n}' for p in ('attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2', 'norm1', 'norm2')
         for n in ('weight', 'bias')]
VQGAN = ['encoder.conv_in.weight', 'encoder.down.{i}.block.{j}.conv1.weight',
         'encoder.down.{i}.block.{j}.nin_shortcut.weight', 'encoder.mid.block_1.norm1.bias',
         'encoder.norm_out.weight', 'encoder.conv_out.bias', 'quantize.embedding.weight',
         'decoder.conv_in.bias', 'decoder.mid.block_2.conv2.weight',
         'decoder.up.{i}.block.{j}.norm2.weight', 'decoder.up.{i}.upsample.conv.weight',
         'decoder.conv_out.weight']
MAGE = (['cls_token', 'pos_embed', 'mask_token', 'patch_embed.proj.weight', 'norm.bias',
         'decoder_embed.weight', 'decoder_norm.weight', 'decoder_pos_embed',
         'decoder_pos_embed_learned', 'decoder_pred.bias', 'mlm_layer.bias', 'mlm_layer.fc.weight',
         'mlm_layer.ln.bias', 'token_emb.LayerNorm.weight', 'token_emb.position_embeddings.weight',
         'token_emb.position_ids', 'token_emb.word_embeddings.weight']
        + [f'blocks.{{i}}.{b}' for b in BLOCK] + [f'decoder_blocks.{{i}}.{b}' for b in BLOCK])
# the released encoder (release name -> ours)
ENCODER = ([(k, k) for k in ('cls_token', 'pos_embed', 'patch_embed.proj.weight',
                             'patch_embed.proj.bias', 'norm.weight', 'norm.bias')]
           + [('tokenizer_norm.weight', 'pre_norm.weight'),
              ('tokenizer_norm.bias', 'pre_norm.bias')]
           + [(f'blocks.{{i}}.{b}',) * 2 for b in BLOCK])
# the released pretraining file (official_addp): name -> our ADDP name, None = left out
ADDP_RELEASE = (
    [(k, f'backbone.{v}') for k, v in ENCODER]
    + [('decoder_embed.weight', 'neck.decoder_embed.weight'),
       ('decoder_embed.bias', 'neck.decoder_embed.bias'),
       ('mask_token', 'neck.mask_token'),
       ('decoder_pos_embed_learned', 'neck.pos_embed'),
       ('decoder_pos_mask_embed', 'neck.pos_mask_embed'),
       ('decoder_pos_token_embed', 'neck.pos_token_embed'),
       ('token_emb.weight', 'neck.token_emb.weight'),
       ('decoder_norm.weight', 'neck.norm.weight'), ('decoder_norm.bias', 'neck.norm.bias'),
       ('mlm_layer.bias', 'neck.mlm_head.bias'),
       ('mlm_layer.fc.weight', 'neck.mlm_head.fc.weight'),
       ('mlm_layer.ln.bias', 'neck.mlm_head.ln.bias')]
    + [(f'decoder_blocks.{{i}}.{b}', f'neck.blocks.{{i}}.{b}') for b in BLOCK]
    # unused by the release's forward, and the frozen parts (loaded from their own files)
    + [(k, None) for k in ('decoder_pos_embed', 'decoder_pred.weight', 'decoder_pred.bias',
                           'pos_token_embed', 'pos_mask_embed')]
    + [(f'vqgan.{k}', None) for k in VQGAN] + [(f'token_predictor.{k}', None) for k in MAGE]
    + [(f'token_predictor.vqgan.{k}', None) for k in VQGAN])
# the released fine-tuning classifier (official_finetune)
FINETUNE = ([(k, f'backbone.{v}') for k, v in ENCODER if not k.startswith('tokenizer_norm')]
            + [('fc_norm.weight', 'backbone.fc_norm.weight'),
               ('fc_norm.bias', 'backbone.fc_norm.bias'),
               ('head.weight', 'head.fc.weight'), ('head.bias', 'head.fc.bias')])

Layout = List[Tuple[str, Optional[str]]]


@st.composite
def released(draw, layout: Layout) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """A random key set of ``layout``: each of its names in about half the examples, at one or two
    block / stage indices up to 23, each key its own tensor; and where each key must land:
    ``{our name: release name}``."""
    index = st.integers(0, 23)
    state, lands = {}, {}
    for name, ours in layout:
        for i, j in draw(st.lists(st.tuples(index, index), max_size=2)):
            key = name.format(i=i, j=j)
            if key not in state:
                state[key] = torch.zeros(1)
                if ours is not None:
                    lands[ours.format(i=i, j=j)] = key
    return state, lands


def assert_lands(out: Dict, state: Dict, lands: Dict[str, str]):
    """Every key that must land does, once, under its name, as the same tensor; nothing else."""
    assert sorted(out) == sorted(lands)
    for ours, key in lands.items():
        assert out[ours] is state[key]


@PROPERTY
@given(released(ADDP_RELEASE))
def test_release_pretraining_keys_land_once(case):
    state, lands = case
    out = addp_state_dict(state)
    assert_lands(out, state, lands)
    assert addp_state_dict(out) == out  # ours stays as it is
    backbone = {k[len('backbone.'):]: v for k, v in lands.items() if k.startswith('backbone.')}
    assert_lands(encoder_state_dict(state), state, backbone)
    assert encoder_state_dict(out) == encoder_state_dict(state)
    timm = {('norm_pre.' + k[len('pre_norm.'):] if k.startswith('pre_norm.') else k): v
            for k, v in backbone.items()}
    assert_lands(timm_vit_state_dict(state), state, timm)
    if lands:  # a model with exactly these keys takes the pretraining converter's output
        converted, name = model_state_dict(state, lands)
        assert name in ('addp_state_dict', 'encoder_state_dict')  # the same keys when no neck.*
        assert_lands(converted, state, lands)
    # the encoder's load pre-hook, on the release file read by a generic loader
    hooked = {'backbone.model': dict(state)}
    rename_encoder_keys(hooked, 'backbone.')
    ours = dict(zip(backbone.values(), backbone))
    assert_lands(hooked, state, {f'backbone.{ours.get(k, k)}': k for k in state})


@PROPERTY
@given(released(FINETUNE))
def test_release_finetune_keys_land_once(case):
    state, lands = case
    assert_lands(finetune_classifier_state_dict(state), state, lands)


@PROPERTY
@given(released([(f'vqgan.{k}', k) for k in VQGAN] + [(k, k) for k in MAGE]),
       st.sampled_from(['', 'token_predictor.']))
def test_token_predictor_and_tokenizer_keys_land_once(case, prefix):
    """MAGE's file, or the token predictor inside a released ADDP file."""
    mage, _ = case
    assume(mage or not prefix)
    state = {prefix + k: v for k, v in mage.items()}
    if prefix:  # beside it, the ADDP file's own parts
        state['blocks.0.norm1.weight'] = state['vqgan.encoder.conv_in.weight'] = torch.zeros(1)
    predictor = {k: prefix + k for k in mage if not k.startswith('vqgan.')}
    assert_lands(mage_state_dict(state), state, predictor)
    vq = {k[len('vqgan.'):]: prefix + k for k in mage if k.startswith('vqgan.')}
    if prefix:  # the ADDP file's own vqgan.* comes first; the predictor's copy when asked
        assert_lands(vqgan_state_dict(state), state, {'encoder.conv_in.weight':
                                                      'vqgan.encoder.conv_in.weight'})
        if vq:
            assert_lands(vqgan_state_dict(state, prefix='token_predictor.vqgan.'), state, vq)
    elif vq:
        assert_lands(vqgan_state_dict(state), state, vq)
    else:
        with pytest.raises(KeyError, match='no VQGAN weights'):
            vqgan_state_dict(state)


@PROPERTY
@given(released([(k, k) for k in VQGAN]))
def test_bare_tokenizer_keys_land_once(case):
    state, lands = case
    assume(state)
    extra = dict(state, **{'loss.discriminator.main.0.weight': torch.zeros(1)})  # left out
    assert_lands(vqgan_state_dict(extra), extra, lands)


# ----------------------------------------------------------------------------------------------
# top-p: the nucleus
# ----------------------------------------------------------------------------------------------
@st.composite
def distributions(draw, max_codes: int = 16):
    K = draw(st.integers(1, max_codes))
    w = draw(hnp.arrays(np.float64, K, elements=st.sampled_from([0., .1, .25]) | st.floats(0, 1)))
    assume(w.sum() > 0)
    return torch.from_numpy(w / w.sum()).float()


def nucleus_size(probs: np.ndarray, top_p: float) -> int:
    """How many of the most likely codes the smallest set of mass >= top_p holds (float64 sums
    of the float32 probabilities); all of them when the total mass stays below top_p."""
    cum = np.cumsum(np.sort(probs.astype(np.float64))[::-1])
    # float32 sums differ from these by ~1e-7: away from the threshold both agree
    assume(np.all(np.abs(cum - top_p) > 1e-5))
    reached = np.flatnonzero(cum >= top_p)
    return int(reached[0]) + 1 if reached.size else probs.size


top_ps = st.floats(1e-9, 1.) | st.sampled_from([1e-9, 0.5, 0.9, 1.])


@PROPERTY
@given(distributions(), top_ps)
def test_nucleus_is_the_smallest_set_reaching_top_p(probs, top_p):
    sorted_probs = probs.sort(descending=True, stable=True).values
    keep = nucleus(sorted_probs, top_p)
    assert keep.dtype == torch.bool and keep.shape == sorted_probs.shape  # a mask, not weights
    k = nucleus_size(probs.numpy(), top_p)
    assert keep.tolist() == [True] * k + [False] * (probs.numel() - k)
    mass = float(sorted_probs[:k].double().sum())
    assert mass >= top_p or k == probs.numel()  # it reaches top_p ...
    assert float(sorted_probs[:k - 1].double().sum()) < top_p  # ... and one code fewer does not


@st.composite
def exact_masses(draw):
    """Probabilities ``k / 64`` (exact in float32, and so are their sums) and a ``top_p`` that is
    often one of the cumulative masses itself: the boundary where a set's mass equals ``top_p``."""
    cuts = sorted(draw(st.lists(st.integers(0, 64), max_size=11)))
    parts = np.diff([0] + cuts + [64])
    probs = torch.from_numpy(np.sort(parts)[::-1] / 64.).float()
    cum = np.cumsum(parts[np.argsort(-parts, kind='stable')])
    top_p = draw(st.sampled_from(cum[cum > 0].tolist()) | st.integers(1, 64)) / 64.
    return probs, top_p


@PROPERTY
@given(exact_masses())
@example((torch.tensor([.5, .25, .25]), .5))  # half the mass in one code: that code alone
def test_nucleus_stops_where_the_mass_equals_top_p(case):
    sorted_probs, top_p = case
    cum = sorted_probs.double().cumsum(0)
    k = int((cum < top_p).sum()) + 1  # the codes before the first to reach top_p, and that one
    assert nucleus(sorted_probs, top_p).tolist() == ([True] * k
                                                     + [False] * (sorted_probs.numel() - k))


@PROPERTY
@given(st.lists(distributions(max_codes=12), min_size=1, max_size=3), top_ps,
       st.integers(0, 2 ** 16))
def test_top_p_samples_only_from_the_nucleus(dists, top_p, seed):
    K = max(p.numel() for p in dists)
    # rows of one batch: each distribution padded with zero-probability codes
    probs = torch.stack([torch.cat([p, p.new_zeros(K - p.numel())]) for p in dists])
    logits = probs.log().view(len(dists), 1, K).expand(-1, 3, -1)
    ids = ADDPSampler(top_p=top_p).sample_ids(logits, torch.Generator().manual_seed(seed))
    assert ids.shape == (len(dists), 3)
    for row, p in zip(ids.tolist(), probs.numpy()):
        # the nucleus: the k most likely codes, ties in code order
        allowed = set(np.argsort(-p, kind='stable')[:nucleus_size(p, top_p)].tolist())
        assert set(row) <= allowed


@PROPERTY
@given(st.lists(distributions(max_codes=12), min_size=1, max_size=3), st.integers(0, 2 ** 16))
def test_categorical_samples_follow_the_generator_and_skip_impossible_codes(dists, seed):
    """``top_p=None`` (the release's default): every position draws from its whole distribution,
    never a code of probability 0, and the same generator seed gives the same codes."""
    K = max(p.numel() for p in dists)
    probs = torch.stack([torch.cat([p, p.new_zeros(K - p.numel())]) for p in dists])
    logits = probs.log().view(len(dists), 1, K).expand(-1, 4, -1)
    sampler = ADDPSampler(top_p=None)
    ids = sampler.sample_ids(logits, torch.Generator().manual_seed(seed))
    assert ids.shape == (len(dists), 4) and ids.dtype == torch.int64
    assert torch.equal(ids, sampler.sample_ids(logits, torch.Generator().manual_seed(seed)))
    for row, p in zip(ids.tolist(), probs.numpy()):
        assert all(p[i] > 0 for i in row)


# ----------------------------------------------------------------------------------------------
# the sampler's schedule: mask ratio, counts, temperature, next mask
# ----------------------------------------------------------------------------------------------
def samplers(max_steps: int = 300):
    return st.builds(ADDPSampler, num_steps=st.integers(1, max_steps),
                     schedule=st.sampled_from(SCHEDULES), choice_temperature=st.floats(0, 10),
                     temperature_mode=st.sampled_from(TEMPERATURE_MODES))


@PROPERTY
@given(samplers(), st.integers(1, 1024))
@example(ADDPSampler(num_steps=4), 256)  # the reference run: [237, 182, 98, 1]
def test_schedule_counts_are_monotone_and_clipped(sampler, N):
    T = sampler.num_steps
    ratios = [sampler.mask_ratio(s) for s in range(T)]
    counts = [sampler.num_masked(s, N) for s in range(T)]
    temps = [sampler.temperature(s) for s in range(T)]
    assert all(0. <= r <= 1. for r in ratios) and ratios[-1] < 1e-12
    assert all(a >= b for a, b in zip(ratios, ratios[1:]))
    assert all(a >= b for a, b in zip(counts, counts[1:]))  # fewer masked after every step
    assert all(1 <= n <= N for n in counts) and counts[-1] == 1  # clipped to [1, N]
    assert counts == [min(max(math.ceil(N * r), 1), N) for r in ratios]
    if (T, N) == (4, 256) and sampler.schedule == 'cosine':
        assert counts == [237, 182, 98, 1]
    if sampler.temperature_mode == 'static':
        assert temps == [sampler.choice_temperature] * T
    else:  # annealed linearly to 0 at the last step
        assert all(a >= b >= 0. for a, b in zip(temps, temps[1:])) and temps[-1] == 0.
        assert temps == pytest.approx([sampler.choice_temperature * (1 - (s + 1) / T)
                                       for s in range(T)])


@st.composite
def next_mask_cases(draw):
    sampler = draw(samplers(max_steps=20))
    step = draw(st.integers(0, sampler.num_steps - 1))
    B, N, K = draw(st.integers(1, 2)), draw(st.integers(1, 24)), draw(st.integers(1, 6))
    floats = st.floats(-4, 4, width=32)
    logits = torch.from_numpy(draw(hnp.arrays(np.float32, (B, N, K), elements=floats)))
    gumbel = torch.from_numpy(draw(hnp.arrays(np.float32, (B, N), elements=floats)))
    tokens = torch.from_numpy(draw(hnp.arrays(np.int64, (B, N), elements=st.integers(0, K - 1))))
    # the unknown positions going into the step: as many as the step before left
    unknown = sampler.num_masked(step - 1, N) if step else N
    noise = torch.from_numpy(draw(hnp.arrays(np.float32, (B, N), elements=floats)))
    mask = masks_from_noise(noise, (unknown, ))[0].bool()
    return sampler, step, logits, tokens, mask, gumbel


@PROPERTY
@given(next_mask_cases())
def test_next_mask_keeps_the_least_confident_unknown_positions(case):
    sampler, step, logits, tokens, mask, gumbel = case
    nxt = sampler.next_mask(logits, tokens, mask, step, gumbel=gumbel)
    n = sampler.num_masked(step, tokens.shape[1])
    assert nxt.dtype == torch.bool and nxt.sum(1).tolist() == [n] * tokens.shape[0]
    assert not bool((nxt & ~mask).any())  # known tokens stay known
    log_p = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
    confidence = log_p + sampler.temperature(step) * gumbel
    for c, chosen, unknown in zip(confidence, nxt, mask):
        dropped = unknown & ~chosen  # the unknown positions whose codes are kept
        if dropped.any():
            assert float(c[chosen].max()) <= float(c[dropped].min())
