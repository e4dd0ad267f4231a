"""Precision settings of the frozen parts and the accuracy contract of every fast mode.

The contract bounds what a fast mode changes, on the reference models and inputs, against fp32
(measured on an AVX512-BF16 / AMX CPU; each bound is 2-3x the measurement):

| quantity (fast mode vs fp32) | bf16 measured -> bound | fp16 measured -> bound |
|---|---|---|
| decoded pixels ``x_t`` (values up to 4.2): max / mean abs error | 0.112 / 0.0079 -> 0.3 / 0.02 | 0.0145 / 0.0010 -> 0.05 / 0.003 |
| training target (probabilities ~1e-3): max abs error / max target | 0.54 % -> 2 % | 0.064 % -> 0.3 % |
| decoder logits under AMP, same ``x_t`` (up to 0.95): max / mean abs error | 0.0118 / 0.0015 -> 0.03 / 0.004 | 0.0014 / 0.00019 -> 0.005 / 0.0006 |
| VQ-encode token ids equal to fp32's (the encoder stays fp32) | 100 % -> >= 99 % | 100 % -> >= 99 % |
| pretraining loss, relative | < 1e-5 -> 1e-2 | < 1e-5 -> 1e-2 |

The ``'release'`` mode (every frozen part under the AMP dtype, the VQ encoder too) has its own
bounds (:data:`RELEASE_BOUNDS`), and checks by the dtypes the layers produce (not by the size of an error, which depends on the
kernels) that reduced precision really ran. fp32 reproduces the release (the ``verify_reference``
rows). bf16 / fp16 run here explicitly, whatever the CPU (emulated where it is not native: slow,
still correct).
"""
import os.path as osp
from contextlib import contextmanager

import pytest
import torch
import torch.nn as nn

from addp_mm.models.target_generators import VQGANTokenizer
from addp_mm.models.utils import precision as P
from addp_mm.models.utils.masking import masked_positions
from verification.core import ReferenceDir
from verification.pretrain import build_reference_addp
from verification.tokenizers import vqgan_from_yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FAST_MODES = ('bf16', 'fp16')


@pytest.fixture(scope='module')
def ref(reference_dir):
    return ReferenceDir(reference_dir)


@pytest.fixture
def probes(monkeypatch):
    """Pretend the CPU has (or lacks) native bf16."""
    def set_native(native: bool):
        for name in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
            monkeypatch.setattr(torch.cpu, name, lambda: native, raising=False)
        P._native_bf16.cache_clear()
    yield set_native
    P._native_bf16.cache_clear()


def test_auto_picks_bf16_only_where_native(probes):
    probes(False)
    assert P.resolve_precision('auto', 'cpu') == 'fp32'
    assert P.precision_dtype('auto', 'cpu') is None
    probes(True)
    assert P.resolve_precision('auto', 'cpu') == 'bf16'
    assert P.precision_dtype('auto', 'cpu') == torch.bfloat16
    for explicit in ('fp32', 'bf16', 'fp16', None):
        assert P.resolve_precision(explicit, 'cpu') == explicit
    assert P.resolve_precision('bfloat16', 'cpu') == 'bf16'
    with pytest.raises(ValueError, match="precision='half'"):
        P.check_precision('half')
    with pytest.raises(ValueError, match='VQGANTokenizer precision'):
        VQGANTokenizer(ch=32, ch_mult=(1, 1), num_res_blocks=1, z_channels=32, embed_dim=32,
                       n_embed=16, precision='int8')


def test_precision_context_overrides_the_callers_autocast():
    lin = nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert lin(x).dtype == torch.bfloat16
        with P.precision_context('fp32', 'cpu'):
            assert lin(x).dtype == torch.float32
        with P.precision_context(None, 'cpu'):  # None follows the caller
            assert lin(x).dtype == torch.bfloat16
    with P.precision_context('bf16', 'cpu'):
        assert lin(x).dtype == torch.bfloat16


@pytest.mark.parametrize('mode', FAST_MODES)
def test_vq_encode_contract(ref, mode):
    """>= 99% of the token ids as fp32 on the reference images, in every fast mode.

    A fast mode sets ``precision`` (the decoder); the encoder keeps ``encode_precision='fp32'``
    because bf16 convolutions flip ~2.5% of the reference ids (measured; fp16 ~0.6%). The decoder
    and the encoder in the reduced precision are checked on crops: fp16 convolutions are emulated
    on a CPU (the whole reference pair takes 34 s, an 8x8 latent crop 2 s)."""
    v = ref.vectors
    yaml, ckpt = ref.file('vqgan_yaml'), ref.file('vqgan')
    fast = vqgan_from_yaml(yaml, checkpoint=ckpt, precision=mode)
    with torch.no_grad(), layer_dtypes(fast.encoder, nn.Conv2d) as enc_seen:
        _, ids = fast.encode(v['img'])
    agree = (ids == v['vq_indices']).float().mean().item()
    assert agree >= 0.99, f'{mode}: {agree:.4f} of the token ids agree with fp32'
    # the encoder stays fp32 (encode_precision; bf16 convolutions flipped ~2.5% of the reference
    # ids when measured, fp16 ~0.6%); the decoder runs in the reduced precision, close to fp32
    # (measured on this crop: 3.2% of the largest value in bf16, 0.4% in fp16)
    assert fast.encode_precision == 'fp32' and enc_seen == {torch.float32}
    crop = v['vq_zq'][:1, :, 4:12, 4:12]
    fp32 = vqgan_from_yaml(yaml, checkpoint=ckpt, precision='fp32')
    with torch.no_grad(), layer_dtypes(fast.decoder, nn.Conv2d) as dec_seen:
        recon = fast.decode(crop)
        exact = fp32.decode(crop)
        # the fp32 decoder it is measured against is the release's, on the whole reference pair
        assert (fp32.decode(v['vq_zq']) - v['vq_recon']).abs().max() < 1e-4
    assert dec_seen == {P.DTYPES[mode]} and recon.dtype == torch.float32
    err = (recon - exact).abs().max().item()
    assert err < 0.05 * exact.abs().max().item()
    fast.encode_precision = mode  # when asked, the encoder runs in it too
    with torch.no_grad(), layer_dtypes(fast.encoder, nn.Conv2d) as enc_seen:
        fast.encode(v['img'][:1, :, :32, :32])
    assert enc_seen == {P.DTYPES[mode]}


# the bounds of the module doc: (max, mean) abs error of x_t, max target error relative to the
# largest target, (max, mean) abs error of the decoder logits under AMP
BOUNDS = {'bf16': dict(x_t=(0.3, 0.02), target=0.02, logits=(0.03, 0.004)),
          'fp16': dict(x_t=(0.05, 0.003), target=0.003, logits=(0.005, 6e-4))}


@contextmanager
def layer_dtypes(module, kind):
    """The set of dtypes that the ``kind`` layers inside ``module`` produce while in the block."""
    seen = set()
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
               for m in module.modules() if isinstance(m, kind)]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize('mode', FAST_MODES)
def test_fast_modes_bound_what_they_change(ref, mode):
    """Frozen parts in ``mode`` (the noised pixels x_t and the targets they produce), and the
    trained parts under autocast (AMP: the decoder's logits on the same x_t), against fp32 on
    the reference models, within the bounds of the module doc."""
    v = ref.vectors
    model = build_reference_addp(ref)
    noiser = model.target_generator
    masks = (v['mask_t'], v['mask_t_next'])
    with torch.no_grad():
        fp32 = noiser(v['img'], *masks)
        noiser.tokenizer.precision = noiser.token_predictor.precision = mode
        with layer_dtypes(noiser.tokenizer.decoder, nn.Conv2d) as tok_seen, \
                layer_dtypes(noiser.token_predictor, nn.Linear) as tp_seen:
            fast = noiser(v['img'], *masks)
    assert (fp32['x_t'] - v['x_t']).abs().max() < 1e-4  # fp32 is the release's
    assert tok_seen == {P.DTYPES[mode]} and tp_seen == {P.DTYPES[mode]}  # reduced precision ran
    bound = BOUNDS[mode]
    err = (fast['x_t'] - fp32['x_t']).abs()
    assert err.max() < bound['x_t'][0] and err.mean() < bound['x_t'][1], (err.max(), err.mean())
    target_err = (fast['target'] - fp32['target']).abs().max() / fp32['target'].abs().max()
    assert target_err < bound['target'], target_err
    assert (fast['indices'] == fp32['indices']).float().mean() >= 0.99

    def logits(noised):
        features = model.encode(noised['x_t'])
        mask = noised['mask_t']
        positions = masked_positions(mask, int(mask[0].sum()))
        return model.neck(features, noised['indices'], mask, positions=positions).float()
    with torch.no_grad():
        logits32 = logits(fp32)
        with torch.autocast('cpu', dtype=P.DTYPES[mode]), \
                layer_dtypes(model.backbone, nn.Linear) as amp_seen:
            logits_amp = logits(fp32)
    assert amp_seen == {P.DTYPES[mode]}
    err = (logits_amp - logits32).abs()
    assert err.max() < bound['logits'][0] and err.mean() < bound['logits'][1], (err.max(), err.mean())
    # and the loss (it sits near ln(vocab) on random weights, so this alone would say little)
    kw = dict(mask_t=v['mask_t'], mask_next=v['mask_t_next'])
    with torch.no_grad(), torch.autocast('cpu', dtype=P.DTYPES[mode]):
        amp = model.loss(v['img'], **kw)['loss'].item()
    assert abs(amp - v['loss'].item()) / v['loss'].item() < 1e-2


# the 'release' mode (every frozen part follows the AMP dtype, the VQ encoder too), measured on
# the reference models: token ids equal to fp32's, max target error / max target, x_t max / mean
# abs error, loss relative -> bounds (about 2-3x the measurement)
#   bf16: 97.3 % | 0.278 | 3.50 / 0.150 | 1.6e-6  ->  >= 95 % | 0.6 | 4.2 (the values' range) / 0.4 | 1e-2
#   fp16: 100 %  | 7.1e-4 | 0.0173 / 0.0010 | 2.5e-7 -> >= 99 % | 3e-3 | 0.05 / 0.003 | 1e-2
RELEASE_BOUNDS = {'bf16': dict(ids=0.95, target=0.6, x_t=(4.2, 0.4)),
                  'fp16': dict(ids=0.99, target=3e-3, x_t=(0.05, 3e-3))}


@pytest.mark.parametrize('mode', FAST_MODES)
def test_release_mode_follows_the_amp_dtype_within_its_bounds(ref, mode):
    """``ADDPNoiser(precision='release')``: the release's own precision, every frozen part (the
    VQ encoder included) under the caller's autocast; without autocast it is fp32 (the release's
    ``--fp32``). bf16 flips a few token ids of the reference images (its mantissa is short), fp16
    (the release's GPU precision) none."""
    v = ref.vectors
    model = build_reference_addp(ref)
    noiser = model.target_generator
    masks = (v['mask_t'], v['mask_t_next'])
    kw = dict(mask_t=v['mask_t'], mask_next=v['mask_t_next'])
    with torch.no_grad():
        fp32 = noiser(v['img'], *masks)
        loss32 = model.loss(v['img'], **kw)['loss'].item()
        noiser.precision = 'release'
        plain = noiser(v['img'], *masks)  # no autocast: fp32, the release's numbers
        with torch.autocast('cpu', dtype=P.DTYPES[mode]), \
                layer_dtypes(noiser.tokenizer.encoder, nn.Conv2d) as enc_seen, \
                layer_dtypes(noiser.tokenizer.decoder, nn.Conv2d) as dec_seen, \
                layer_dtypes(noiser.token_predictor, nn.Linear) as tp_seen:
            amp = noiser(v['img'], *masks)
        with torch.autocast('cpu', dtype=P.DTYPES[mode]):
            loss = model.loss(v['img'], **kw)['loss'].item()
    assert torch.equal(plain['indices'], fp32['indices'])
    assert (plain['x_t'] - v['x_t']).abs().max() < 1e-4
    assert enc_seen == dec_seen == tp_seen == {P.DTYPES[mode]}  # every part followed AMP
    bound = RELEASE_BOUNDS[mode]
    assert (amp['indices'] == fp32['indices']).float().mean() >= bound['ids']
    target_err = (amp['target'] - fp32['target']).abs().max() / fp32['target'].abs().max()
    assert target_err < bound['target'], target_err
    err = (amp['x_t'] - fp32['x_t']).abs()
    assert err.max() < bound['x_t'][0] and err.mean() < bound['x_t'][1], (err.max(), err.mean())
    assert abs(loss - loss32) / loss32 < 1e-2


def test_frozen_modes_per_device(probes):
    """The modes a config names: 'auto' is the release's under the caller's autocast (mixed
    precision training, on any device) and ours ('fast') without one."""
    assert P.frozen_precisions('fp32', 'cpu') == ('fp32', 'fp32', 'fp32')
    assert P.frozen_precisions('fast', 'cpu') == ('fp32', 'auto', 'auto')
    assert P.frozen_precisions('release', 'cpu') == (None, None, None)
    assert P.frozen_precisions('auto', 'cpu') == ('fp32', 'auto', 'auto')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert P.frozen_precisions('auto', 'cpu') == (None, None, None)
        with torch.autocast('cpu', enabled=False):
            assert P.frozen_precisions('auto', 'cpu') == ('fp32', 'auto', 'auto')
    assert P.frozen_precisions('auto', 'meta') == ('fp32', 'auto', 'auto')  # no autocast there
    assert P.frozen_precisions(None, 'cpu') == (P.OWN, P.OWN, P.OWN)
    with pytest.raises(ValueError, match="precision='half': choose one of"):
        P.check_frozen_mode('half')


def test_release_style_benchmark_path_matches_ours(ref):
    """The benchmark's release-style reference computes the same loss and images as ours."""
    from benchmark_release_path import (release_generate, release_loss, release_predict,
                                        release_res_block, release_swish, release_tokenizer)
    from addp_mm.models.generation import ADDPSampler
    from addp_mm.models.layers import vit
    v = ref.vectors
    model = build_reference_addp(ref)
    tok = release_tokenizer(model.target_generator.tokenizer)
    assert tok.decoder.conv_in.weight.is_contiguous()
    # taming's swish on the copy only
    assert tok.encoder.activation is release_swish and tok.decoder.run_block is release_res_block
    assert 'activation' not in vars(model.target_generator.tokenizer.decoder)
    attns = [m for m in model.modules() if isinstance(m, vit.Attention)]
    assert attns and all(a.fused_attn for a in attns)
    loss = release_loss(model, tok, v['img'], v['mask_t'], v['mask_t_next'])
    assert all(a.fused_attn for a in attns)  # switched back
    assert loss.item() == pytest.approx(v['loss'].item(), abs=1e-4)
    # the release-style predictor call (every position, whole vocabulary) = the recorded targets
    pred = model.target_generator.token_predictor
    probs = release_predict(pred, v['vq_indices'], v['mask_t'])
    assert torch.allclose(probs, v['tp_probs'], rtol=1e-4, atol=1e-7)
    assert torch.allclose(probs, pred(v['vq_indices'], v['mask_t']), rtol=1e-4, atol=1e-7)
    sampler = ADDPSampler(num_steps=3)
    ours = sampler.sample(model, 2, seed=0)
    theirs = release_generate(model, tok, sampler, 2, seed=0)
    assert (ours - theirs).abs().max().item() < 1e-3


def test_train_amp_chooses_the_frozen_mode():
    """``tools/train.py CONFIG --amp release``: mixed precision, and the frozen parts of a
    pretraining config follow the AMP dtype; ``--amp`` alone keeps the config's mode; a config
    without frozen parts takes no mode."""
    from mmengine.config import Config

    from addp_mm.engine.config import set_frozen_precision
    from addp_mm.errors import UsageError
    from conftest import tool
    parse = tool('train').parse_args
    assert parse(['c.py', '--amp']).amp == 'config' and parse(['c.py']).amp is None
    assert parse(['c.py', '--amp', 'release']).amp == 'release'
    assert tool('train').FROZEN_MODES == P.FROZEN_MODES
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain',
                                   'addp_vit-demo-p16_1xb8-300iter_demo-64px.py'))
    assert cfg.model.target_generator.precision == 'fp32'
    set_frozen_precision(cfg, 'release')
    assert cfg.model.target_generator.precision == 'release'
    with pytest.raises(UsageError, match='has no frozen parts'):
        set_frozen_precision(Config.fromfile(osp.join(
            ROOT, 'configs', 'demo', 'vit-demo-p16_1xb32-30e_demo-in1k-128px.py')), 'release')
