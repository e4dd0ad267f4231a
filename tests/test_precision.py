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

and checks by the dtypes the layers produce (not by the size of an error, which depends on the
kernels) that reduced precision really ran. fp32 reproduces the release (the ``verify_reference``
rows). bf16 / fp16 run here explicitly, whatever the CPU (emulated where it is not native: slow,
still correct).
"""
import os.path as osp
import sys
from contextlib import contextmanager

import pytest
import torch
import torch.nn as nn

from addp_mm.models.target_generators import VQGANTokenizer
from addp_mm.models.utils import precision as P
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


def test_channels_last_keeps_keys_and_loads_nchw_weights():
    torch.manual_seed(0)
    kw = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=32, embed_dim=32, n_embed=16)
    a = VQGANTokenizer(**kw)
    conv = a.decoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert a.encoder.conv_in.weight.is_contiguous()  # NCHW: exact token ids
    nchw = {k: v.contiguous() for k, v in a.state_dict().items()}
    b = VQGANTokenizer(**kw)
    b.load_state_dict(nchw, strict=True)
    assert set(b.state_dict()) == set(nchw)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        za, ia = a.encode(x)
        y = b.decode(za)
    assert torch.equal(ia, b.encode(x)[1])
    assert y.is_contiguous() and y.dtype == torch.float32
    # with gradients recorded nothing is done in place, so autograd still works
    z = za.clone().requires_grad_(True)
    a.decode(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_encoder_layout_follows_the_precision(ref):
    """fp32: NCHW, the release's latents; a fast mode: channels-last fp32, every reference id kept."""
    v = ref.vectors
    tok = vqgan_from_yaml(ref.file('vqgan_yaml'), checkpoint=ref.file('vqgan'), precision='fp32')
    assert tok.encode_channels_last is None
    assert tok.encode_memory_format('cpu') == torch.contiguous_format
    with torch.no_grad():
        z32 = tok.encode_latent(v['img'])
    assert z32.is_contiguous() and (z32 - v['vq_z']).abs().max() < 1e-5
    for precision, forced, expect in (('bf16', None, torch.channels_last),
                                      ('fp16', None, torch.channels_last),
                                      ('bf16', False, torch.contiguous_format),
                                      ('fp32', True, torch.channels_last)):
        tok.precision, tok.encode_channels_last = precision, forced
        assert tok.encode_memory_format('cpu') == expect
        # other devices: channels-last only when asked (the CPU is where it was measured)
        assert tok.encode_memory_format('meta') == (expect if forced else torch.contiguous_format)
        with torch.no_grad():
            z = tok.encode_latent(v['img'])
            ids = tok.quantize(z)[1]
        assert z.dtype == torch.float32 and z.is_contiguous(memory_format=expect)
        err = (z - v['vq_z']).abs().max().item()
        if expect == torch.contiguous_format:
            assert err < 1e-5
        else:  # channels-last GroupNorm may sum in another order: measured 2.8e-4, ids all kept
            assert err < 2e-3
            assert (ids == v['vq_indices']).float().mean().item() >= 0.99
    with pytest.raises(ValueError, match='encode_channels_last'):
        VQGANTokenizer(ch=32, ch_mult=(1, 1), num_res_blocks=1, z_channels=32, embed_dim=32,
                       n_embed=16, encode_channels_last='yes')


@pytest.mark.parametrize('layout', (torch.contiguous_format, torch.channels_last))
def test_fused_residual_convolution_is_exact(monkeypatch, layout):
    """Inference writes ``conv2(h) + x`` of each residual block into ``x`` with one oneDNN call:
    bit-identical in fp32, close in bf16, never used with gradients or on a block called alone."""
    from addp_mm.models.target_generators import vqgan
    assert vqgan._FUSED_CONV_ADD, 'this torch build has no oneDNN convolution with post-ops'
    calls = []
    fused = vqgan._conv_add_

    def counting(conv, h, x):
        out = fused(conv, h, x)
        calls.append(out is not None)
        return out
    monkeypatch.setattr(vqgan, '_conv_add_', counting)
    torch.manual_seed(0)
    tok = VQGANTokenizer(ch=32, ch_mult=(1, 2), num_res_blocks=2, z_channels=32, embed_dim=32,
                         n_embed=16, precision='fp32', encode_channels_last=layout == torch.channels_last)
    x, z = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        lat, rec = tok.encode_latent(x), tok.decode(z)
        assert calls and all(calls)  # the fused kernel ran
        monkeypatch.setattr(vqgan, '_FUSED_CONV_ADD', False)
        lat0, rec0 = tok.encode_latent(x), tok.decode(z)
    assert torch.equal(lat, lat0) and torch.equal(rec, rec0)
    monkeypatch.setattr(vqgan, '_FUSED_CONV_ADD', True)
    tok.precision = 'bf16'
    with torch.no_grad(), layer_dtypes(tok.decoder, nn.Conv2d) as seen:
        rec16 = tok.decode(z)
    assert seen == {torch.bfloat16} and (rec16 - rec0).abs().max() < 0.05 * rec0.abs().max()
    # a block called on its own leaves its input alone; with gradients nothing is in place
    block = tok.encoder.down[0].block[1]
    h = torch.randn(2, 32, 32, 32)
    kept = h.clone()
    n = len(calls)
    with torch.no_grad():
        block(h)
    assert torch.equal(h, kept) and len(calls) == n
    zg = z.clone().requires_grad_(True)
    tok.precision = 'fp32'
    tok.decode(zg).sum().backward()
    assert zg.grad is not None and not any(calls[n:])
    # a residual in another layout than the convolution's output is not written into
    conv = tok.encoder.down[0].block[1].conv2
    with torch.no_grad():
        h = torch.randn(2, 32, 8, 8)
        x = torch.randn(2, 32, 8, 8).contiguous(memory_format=torch.channels_last)
        assert fused(conv, h, x) is None
        assert fused(conv, h.contiguous(memory_format=torch.channels_last), x) is not None


@pytest.mark.parametrize('mode', FAST_MODES)
def test_vq_encode_contract(ref, mode):
    """>= 99% of the token ids as fp32 on the reference images, in every fast mode.

    A fast mode sets ``precision`` (the decoder); the encoder keeps ``encode_precision='fp32'``
    because bf16 convolutions flip ~2.5% of the reference ids (measured; fp16 ~0.6%)."""
    v = ref.vectors
    fast = vqgan_from_yaml(ref.file('vqgan_yaml'), checkpoint=ref.file('vqgan'), precision=mode)
    with torch.no_grad(), layer_dtypes(fast.encoder, nn.Conv2d) as enc_seen:
        _, ids = fast.encode(v['img'])
    with torch.no_grad(), layer_dtypes(fast.decoder, nn.Conv2d) as dec_seen:
        recon = fast.decode(v['vq_zq'])
    agree = (ids == v['vq_indices']).float().mean().item()
    assert agree >= 0.99, f'{mode}: {agree:.4f} of the token ids agree with fp32'
    # the encoder stays fp32 (encode_precision; bf16 convolutions flipped ~2.5% of the reference
    # ids when measured, fp16 ~0.6%); the decoder runs in the reduced precision, close to fp32
    assert fast.encode_precision == 'fp32' and enc_seen == {torch.float32}
    assert dec_seen == {P.DTYPES[mode]} and recon.dtype == torch.float32
    err = (recon - v['vq_recon']).abs().max().item()
    assert err < 0.05 * v['vq_recon'].abs().max().item()
    fast.encode_precision = mode  # when asked, the encoder runs in it too
    with torch.no_grad(), layer_dtypes(fast.encoder, nn.Conv2d) as enc_seen:
        fast.encode(v['img'])
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
        return model.neck(features, noised['indices'], noised['mask_t'], noised['num_visible'],
                          masked_only=True).float()
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


def test_release_style_benchmark_path_matches_ours(ref):
    """The benchmark's release-style reference computes the same loss and images as ours."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        from benchmark_release_path import (release_generate, release_loss, release_predict,
                                            release_tokenizer)
    finally:
        sys.path.remove(osp.join(ROOT, 'tools'))
    from addp_mm.models.generation import ADDPSampler
    from addp_mm.models.layers import vit
    v = ref.vectors
    model = build_reference_addp(ref)
    tok = release_tokenizer(model.target_generator.tokenizer)
    assert tok.decoder.conv_in.weight.is_contiguous()
    forward = vit.Attention.forward
    loss = release_loss(model, tok, v['img'], v['mask_t'], v['mask_t_next'])
    assert vit.Attention.forward is forward  # swapped back
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
