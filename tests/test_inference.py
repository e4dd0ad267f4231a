"""The inference switch (``optimize_for_inference``): each speed-up keeps names and numbers (exact,
or within float noise where the summation order changes), applies only without gradients, and
falls back to the reference path where its kernel is missing; ``reference_form`` undoes it."""
import copy

import pytest
import torch
import torch.nn as nn

from addp_mm.models.target_generators import MAGETokenPredictor, VQGANTokenizer
from addp_mm.models.layers import inference
from addp_mm.models.layers.inference import optimize_for_inference, reference_form
from test_precision import layer_dtypes
from verification.tokenizers import vqgan_from_yaml

KW = dict(ch=32, ch_mult=(1, 2), num_res_blocks=2, z_channels=32, embed_dim=32, n_embed=16)


def tokenizer(**kw):
    torch.manual_seed(0)
    return VQGANTokenizer(**{**KW, **kw})


def test_inference_form_keeps_names_numbers_and_gradients():
    plain = tokenizer()
    fast = optimize_for_inference(copy.deepcopy(plain))
    assert type(fast) is not VQGANTokenizer and isinstance(fast, VQGANTokenizer)
    assert optimize_for_inference(fast) is fast and optimize_for_inference(None) is None
    conv = fast.decoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert plain.state_dict().keys() == fast.state_dict().keys()
    # NCHW weights (a file) load into the inference form
    fast.load_state_dict({k: v.contiguous() for k, v in plain.state_dict().items()}, strict=True)
    x, z = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        (za, ia), (zb, ib) = plain.encode(x), fast.encode(x)
        ya, yb = plain.decode(z), fast.decode(z)
    assert torch.equal(ia, ib) and torch.equal(za, zb)  # fp32 encoder: NCHW, exact
    assert yb.is_contiguous() and (ya - yb).abs().max() < 1e-5
    # with gradients recorded nothing is done in place: autograd works, the input is untouched
    zg = z.clone().requires_grad_(True)
    fast.decode(zg).sum().backward()
    assert zg.grad is not None and torch.isfinite(zg.grad).all() and torch.equal(zg, z)
    # the token predictor's blocks: the same probabilities
    torch.manual_seed(0)
    pred = MAGETokenPredictor(embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32,
                              decoder_depth=1, decoder_num_heads=2, codebook_size=16, grid_size=4)
    fast_pred = optimize_for_inference(copy.deepcopy(pred))
    ids, mask = torch.randint(0, 16, (2, 16)), torch.rand(2, 16) < 0.5
    assert torch.equal(pred(ids, mask), fast_pred(ids, mask))
    # and back
    back = reference_form(fast)
    assert type(back) is VQGANTokenizer and back.decoder.conv_in.weight.is_contiguous()
    assert type(back.decoder).__name__ == 'VQGANDecoder'


def test_encoder_layout_follows_the_precision(reference_dir):
    """fp32: NCHW, the release's latents; a fast mode: channels-last fp32, every reference id kept
    (the encoder's GroupNorms sum in another order: latents move by ~3e-4 when measured)."""
    from verification.core import ReferenceDir
    ref = ReferenceDir(reference_dir)
    v = ref.vectors
    tok = optimize_for_inference(vqgan_from_yaml(ref.file('vqgan_yaml'), checkpoint=ref.file('vqgan'),
                                                 precision='fp32'))
    assert tok.encoder_layout('cpu') == torch.contiguous_format
    with torch.no_grad():
        z32 = tok.encode_latent(v['img'])
    assert z32.is_contiguous() and (z32 - v['vq_z']).abs().max() < 1e-5
    for precision, forced, expect in (('bf16', None, torch.channels_last),
                                      ('fp16', None, torch.channels_last),
                                      ('bf16', False, torch.contiguous_format),
                                      ('fp32', True, torch.channels_last)):
        tok.precision = precision
        optimize_for_inference(tok, encoder_channels_last=forced)
        assert tok.encoder_layout('cpu') == expect
        # other devices: channels-last only when asked (the CPU is where it was measured)
        assert tok.encoder_layout('meta') == (expect if forced else torch.contiguous_format)
        with torch.no_grad():
            z = tok.encode_latent(v['img'])
            ids = tok.quantize(z)[1]
        assert z.dtype == torch.float32 and z.is_contiguous(memory_format=expect)
        err = (z - v['vq_z']).abs().max().item()
        if expect == torch.contiguous_format:
            assert err < 1e-5
        else:
            assert err < 2e-3
            assert (ids == v['vq_indices']).float().mean().item() >= 0.99


@pytest.mark.parametrize('layout', (torch.contiguous_format, torch.channels_last))
def test_fused_residual_convolution_is_exact(monkeypatch, layout):
    """Inference writes ``conv2(h) + x`` of each residual block into ``x`` with one oneDNN call:
    bit-identical in fp32, close in bf16, never with gradients or on a block called alone, and the
    reference path when the private op is missing or fails."""
    assert inference.FUSED_CONV_ADD, 'this torch build has no oneDNN convolution with post-ops'
    calls = []
    fused = inference.conv_add_

    def counting(conv, h, x):
        out = fused(conv, h, x)
        calls.append(out is not None)
        return out
    monkeypatch.setattr(inference, 'conv_add_', counting)
    tok = optimize_for_inference(tokenizer(precision='fp32'),
                                 encoder_channels_last=layout == torch.channels_last)
    x, z = torch.rand(2, 3, 32, 32), torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        lat, rec = tok.encode_latent(x), tok.decode(z)
        assert calls and all(calls)  # the fused kernel ran
        monkeypatch.setattr(inference, 'FUSED_CONV_ADD', False)
        lat0, rec0 = tok.encode_latent(x), tok.decode(z)
    assert torch.equal(lat, lat0) and torch.equal(rec, rec0)
    monkeypatch.setattr(inference, 'FUSED_CONV_ADD', True)
    tok.precision = 'bf16'
    with torch.no_grad(), layer_dtypes(tok.decoder, nn.Conv2d) as seen:
        rec16 = tok.decode(z)
    assert seen == {torch.bfloat16} and (rec16 - rec0).abs().max() < 0.05 * rec0.abs().max()
    # a block called on its own leaves its input alone; with gradients nothing is fused
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

    # the private op gone or changed in a later torch: the reference path, the same numbers
    class Changed:
        @staticmethod
        def binary(*args):
            raise RuntimeError('schema changed')
    monkeypatch.setattr(torch.ops.mkldnn, '_convolution_pointwise_', Changed, raising=False)
    with torch.no_grad():
        assert torch.equal(tok.decode(z), rec0)


def test_inference_form_is_a_constructor_flag_of_the_holders():
    """``inference_form`` of ``ADDPNoiser`` / ``MAGETokenTrainer`` is what a config sees: on by
    default (the fast forms of the tokenizer, its encoder / decoder and the predictor's blocks),
    off keeps every reference class."""
    from mmengine.registry import MODELS

    from addp_mm.models.layers import TransformerBlock, VQGANDecoder, VQGANEncoder
    pred = dict(type='MAGETokenPredictor', embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                decoder_depth=1, decoder_num_heads=2)
    for flag in (True, False):
        noiser = MODELS.build(dict(type='ADDPNoiser', tokenizer=dict(type='VQGANTokenizer', **KW),
                                   token_predictor=pred, inference_form=flag))
        trainer = MODELS.build(dict(type='MAGETokenTrainer', tokenizer=dict(type='VQGANTokenizer', **KW),
                                    token_predictor=pred, inference_form=flag))
        for tok in (noiser.tokenizer, trainer.tokenizer):
            kinds = {type(tok), type(tok.encoder), type(tok.decoder)}
            plain = {VQGANTokenizer, VQGANEncoder, VQGANDecoder}
            assert (kinds == plain) is not flag
            assert tok.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last) is flag
        blocks = [m for m in noiser.token_predictor.modules() if isinstance(m, TransformerBlock)]
        assert blocks and all((type(b) is TransformerBlock) is not flag for b in blocks)
        # the trained predictor of MAGETokenTrainer is never switched
        assert all(type(m) is TransformerBlock for m in trainer.token_predictor.modules()
                   if isinstance(m, TransformerBlock))
