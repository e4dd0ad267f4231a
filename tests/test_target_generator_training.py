"""Training the frozen parts on your own images: ``VQAutoencoder`` (losses, straight-through
gradients, usage counters, dead-code restart), ``MAGETokenTrainer`` (masked-only loss, MAGE's
mask-ratio distribution) and ``ExportPartHook`` (the files load strictly with the existing
loaders and give the same outputs)."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from addp_mm.engine.hooks import ExportPartHook
from addp_mm.models import MAGETokenPredictor, MAGETokenTrainer, VQAutoencoder, VQGANTokenizer

TOKENIZER = dict(type='VQGANTokenizer', ch=32, ch_mult=[1, 2], num_res_blocks=1, z_channels=8,
                 n_embed=16, embed_dim=8, resolution=8, precision='fp32')
PREDICTOR = dict(type='MAGETokenPredictor', embed_dim=32, depth=1, num_heads=2,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, num_classes=80,
                 attn_fp32=False, precision='fp32')


def _vq(**kw):
    torch.manual_seed(0)
    model = VQAutoencoder(tokenizer=TOKENIZER, **kw)
    model.init_weights()
    return model


def _export(module_owner, part, tmp_path):
    runner = SimpleNamespace(model=module_owner, work_dir=str(tmp_path), iter=1, epoch=0)
    return ExportPartHook(part=part, filename=f'{part}.pth').export(runner)


def test_vq_losses_and_straight_through_gradients():
    model = _vq(restart_dead_codes=False)
    x = torch.rand(2, 3, 8, 8)
    losses = model.loss(x)
    z = model.tokenizer.encode_latent(x)
    z_q, idx = model.tokenizer.quantize(z)
    e = model.tokenizer.codebook[idx.flatten()].view(2, 4, 4, 8).permute(0, 3, 1, 2)
    rec = model.tokenizer.decode(z_q)
    assert torch.allclose(losses['loss_rec'], F.mse_loss(rec, x), atol=1e-6)
    assert torch.allclose(losses['loss_commit'], 0.25 * F.mse_loss(z, e), atol=1e-6)
    assert torch.allclose(losses['loss_codebook'], F.mse_loss(e, z), atol=1e-6)
    # the reconstruction alone reaches the encoder (straight-through) but not the codebook
    model.zero_grad()
    losses['loss_rec'].backward(retain_graph=True)
    assert model.tokenizer.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.tokenizer.codebook.grad is None or model.tokenizer.codebook.grad.abs().sum() == 0
    # the codebook loss moves exactly the codes that were chosen
    model.zero_grad()
    losses['loss_codebook'].backward(retain_graph=True)
    moved = model.tokenizer.codebook.grad.abs().sum(1) > 0
    chosen = torch.zeros(16, dtype=torch.bool)
    chosen[idx.flatten()] = True
    assert torch.equal(moved, chosen)
    assert model.tokenizer.encoder.conv_in.weight.grad is None or \
        model.tokenizer.encoder.conv_in.weight.grad.abs().sum() == 0


def test_usage_counter():
    stats_ = VQAutoencoder.usage(torch.tensor([[0, 0, 1, 1]]), 4)
    assert stats_['codes_used'].item() == pytest.approx(0.5)
    assert stats_['perplexity'].item() == pytest.approx(2.0)
    stats_ = VQAutoencoder.usage(torch.tensor([[3, 3, 3, 3]]), 8)
    assert stats_['codes_used'].item() == pytest.approx(1 / 8)
    assert stats_['perplexity'].item() == pytest.approx(1.0)
    # the running counts follow the chosen codes
    model = _vq(restart_dead_codes=False, usage_decay=0.5)
    x = torch.rand(2, 3, 8, 8)
    model.loss(x)
    idx = model.tokenizer.encode(x)[1]
    assert torch.equal(model.code_counts, torch.bincount(idx.flatten(), minlength=16).float())


def test_dead_code_restart_replaces_unused_codes():
    model = _vq(restart_interval=1, restart_threshold=0.5)
    with torch.no_grad():  # every code but 0 far away: only code 0 is ever chosen
        model.tokenizer.codebook.data[1:] = 1e3
        model.tokenizer.codebook.data[0] = 0.
    x = torch.rand(2, 3, 8, 8)
    z = model.tokenizer.encode_latent(x).detach()
    model.train()
    model.loss(x)  # step 1: counts -> code 0 used, 1..15 dead -> restarted
    cb = model.tokenizer.codebook.detach()
    assert model.num_restarted.item() == 15
    assert torch.equal(cb[0], torch.zeros(8))
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    for row in cb[1:]:  # each restarted code is one of the batch's encoder outputs
        assert (flat - row).abs().amax(1).min() < 1e-6
    assert (model.code_counts[1:] == 0.5).all()
    # the restarted codes are now chosen
    assert model.tokenizer.encode(x)[1].unique().numel() > 1
    # off: nothing replaced
    model = _vq(restart_dead_codes=False, restart_interval=1)
    with torch.no_grad():
        model.tokenizer.codebook.data[1:] = 1e3
    model.train()
    model.loss(x)
    assert model.num_restarted.item() == 0 and (model.tokenizer.codebook[1:] == 1e3).all()


def test_exported_tokenizer_loads_strictly_with_same_outputs(tmp_path):
    model = _vq()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(2, 3, 8, 8)
    for _ in range(2):
        opt.zero_grad()
        sum(v for k, v in model.loss(x).items() if k.startswith('loss')).backward()
        opt.step()
    path = _export(model, 'tokenizer', tmp_path)
    loaded = VQGANTokenizer(**{k: v for k, v in TOKENIZER.items() if k != 'type'},
                            checkpoint=path)
    loaded.init_weights()  # strict
    model.eval()
    with torch.no_grad():
        z_a, i_a = model.tokenizer.encode(x)
        z_b, i_b = loaded.encode(x)
        assert torch.equal(i_a, i_b)
        assert torch.allclose(model.tokenizer.decode(z_a), loaded.decode(z_b), atol=1e-6)
    # and not an untrained tokenizer by accident
    fresh = VQGANTokenizer(**{k: v for k, v in TOKENIZER.items() if k != 'type'})
    assert not torch.equal(fresh.codebook, loaded.codebook)


def _mage(tmp_path):
    torch.manual_seed(0)
    tok = VQGANTokenizer(**{k: v for k, v in TOKENIZER.items() if k != 'type'})
    tok_file = str(tmp_path / 'tok.pth')
    torch.save({'state_dict': tok.state_dict()}, tok_file)
    model = MAGETokenTrainer(tokenizer=dict(TOKENIZER, checkpoint=tok_file),
                             token_predictor=PREDICTOR)
    model.init_weights()
    return model, tok


def test_mage_objective_is_masked_only(tmp_path):
    model, tok = _mage(tmp_path)
    assert torch.equal(model.tokenizer.codebook, tok.codebook)  # loaded from its file
    x = torch.rand(3, 3, 8, 8)
    ids = model.tokens(x)
    mask = model.random_mask(3, 16, 0.5, ids.device)
    assert (mask.sum(1) == 8).all()
    logits = torch.randn(3, 16, 16, requires_grad=True)
    model.masked_logits = lambda i, m: logits
    out = model.loss(x, mask=mask)
    ce = F.cross_entropy(logits[mask], ids[mask], label_smoothing=0.1)
    assert torch.allclose(out['loss'], ce, atol=1e-6)
    out['loss'].backward()
    assert (logits.grad[~mask] == 0).all() and (logits.grad[mask].abs().sum(-1) > 0).all()
    acc = (logits.argmax(-1) == ids)[mask].float().mean()
    assert out['acc_masked'].item() == pytest.approx(acc.item())


def test_mage_trainer_hides_the_masked_ids_from_the_predictor(tmp_path):
    """The unmocked path: what the predictor computes does not depend on the ids at masked
    positions (any other code there gives the same logits everywhere), and does depend on the
    visible ones."""
    model, _ = _mage(tmp_path)
    model.eval()
    ids = torch.randint(0, 16, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = model.random_mask(2, 16, 0.5, ids.device)
    with torch.no_grad():
        logits = model.masked_logits(ids, mask)
        other = torch.where(mask, (ids + 1 + torch.arange(16) % 7) % 16, ids)
        assert not torch.equal(other, ids)
        assert torch.equal(model.masked_logits(other, mask), logits)
        visible = torch.nonzero(~mask[0])[0, 0]
        changed = ids.clone()
        changed[0, visible] = (ids[0, visible] + 1) % 16
        assert (model.masked_logits(changed, mask)[0] - logits[0]).abs().max() > 1e-4


def test_mage_mask_ratio_distribution(tmp_path):
    model, _ = _mage(tmp_path)
    torch.manual_seed(0)
    ratios = torch.tensor([model.draw_ratio() for _ in range(4000)])
    assert ratios.min() >= 0.5 and ratios.max() <= 1.0
    ref = stats.truncnorm((0.5 - 0.55) / 0.25, (1.0 - 0.55) / 0.25, loc=0.55, scale=0.25)
    assert ratios.mean().item() == pytest.approx(ref.mean(), abs=0.01)
    assert ratios.std().item() == pytest.approx(ref.std(), abs=0.01)
    assert stats.kstest(ratios.numpy(), ref.cdf).pvalue > 1e-3
    for r in (0.5, 0.51, 0.99, 1.0):
        assert (model.random_mask(4, 16, r, torch.device('cpu')).sum(1)
                == math.ceil(16 * r)).all()


def test_mage_trainer_freezes_tokenizer_and_exports_predictor(tmp_path):
    model, _ = _mage(tmp_path)
    model.train()
    assert not model.tokenizer.training
    assert not any(p.requires_grad for p in model.tokenizer.parameters())
    assert not any(k.startswith('tokenizer.') for k in model.state_dict())
    model.load_state_dict(model.state_dict())  # loads without the tokenizer's keys
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.rand(2, 3, 8, 8)
    opt.zero_grad()
    model.loss(x)['loss'].backward()
    opt.step()
    path = _export(model, 'token_predictor', tmp_path)
    loaded = MAGETokenPredictor(**{k: v for k, v in PREDICTOR.items() if k != 'type'},
                                codebook_size=16, grid_size=4, checkpoint=path)
    loaded.init_weights()  # strict
    ids = model.tokens(x)
    mask = model.random_mask(2, 16, 0.5, ids.device)
    model.eval()
    assert torch.allclose(model.token_predictor(ids, mask), loaded(ids, mask), atol=1e-6)


def test_export_hook_names_a_wrong_part(tmp_path):
    model = _vq()
    runner = SimpleNamespace(model=model, work_dir=str(tmp_path), iter=0, epoch=0)
    with pytest.raises(AttributeError, match='no part'):
        ExportPartHook(part='tokeniser', filename='x.pth').before_train(runner)
