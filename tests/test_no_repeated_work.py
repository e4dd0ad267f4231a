"""Nothing computed that is not used: one batched token-predictor pass per pretraining step, no
encoder pass on the first generation step, only the sampled logits in generation."""
import torch

from addp_mm.models.generation import ADDPSampler
from addp_mm.models.layers import optimize_for_inference
from addp_mm.models.utils.masking import masked_positions

from test_pretrain_model import model  # noqa: F401,F811  (the fixture: the tiny ADDP model)


def _count_calls(module):
    calls = []
    module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls


def test_pretraining_step_runs_the_predictor_once_batched(model):
    calls = _count_calls(model.target_generator.token_predictor)
    enc_calls = _count_calls(model.target_generator.tokenizer.encoder)
    dec_calls = _count_calls(model.target_generator.tokenizer.decoder)
    model.loss(torch.rand(3, 3, 64, 64))
    assert calls == [6]  # both masks of the 3 images in one pass
    assert enc_calls == [3] and dec_calls == [3]


def test_generation_skips_the_first_encoder_pass_and_unused_logits(model):
    enc_calls = _count_calls(model.backbone)
    mlm_out = []
    model.neck.mlm_head.register_forward_hook(lambda m, i, o: mlm_out.append(tuple(o.shape)))
    ADDPSampler(num_steps=4).sample(model, 2, seed=0)
    assert len(enc_calls) == 3  # steps 1..3; step 0 sees a fully masked grid
    assert all(shape == (2, 16, 64) for shape in mlm_out)  # B x N x codebook, not 1+N+V x vocab


def test_scoring_what_is_read_equals_slicing_the_whole_sequence(model):
    """Generation scores the grid positions over the codebook (``num_codes``), pretraining the
    masked ones (``positions``): the same numbers as scoring the whole sequence over the whole
    vocabulary, as the release does, and slicing."""
    model.eval()
    B, N = 2, 16
    enc = torch.randn(B, N + 1, 32)
    ids = torch.randint(0, 64, (B, N))
    mask = torch.zeros(B, N, dtype=torch.bool)
    mask[:, ::3] = True
    full = model.neck.score(model.neck.features(enc, ids, mask))
    assert full.shape == (B, 1 + N + int((~mask[0]).sum()), model.neck.vocab_size)
    codes = model.neck(enc, ids, mask, num_codes=64)
    assert codes.shape == (B, N, 64)
    torch.testing.assert_close(codes, full[:, 1:1 + N, :64], rtol=1e-5, atol=1e-5)


def _grads(module):
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def test_training_scores_only_the_masked_grid_positions(model):
    """The pretraining loss reads the masked grid positions only: the decoder scores just those
    (not the cls slot, the visible grid slots or the appended visible tokens) and the loss and
    every gradient equal those of scoring the whole sequence."""
    model.train()
    B, N = 3, 16
    torch.manual_seed(1)
    # 10 of 16 masked under mask_t (both kinds of position exist), 13 under mask_next
    rank = torch.rand(B, N).argsort(dim=1).argsort(dim=1)
    mask, mask_next = rank < 10, rank < 13
    num_masked = 10
    noised = model.target_generator(torch.rand(B, 3, 64, 64), mask, mask_next)
    mlm_rows = []
    hook = model.neck.mlm_head.register_forward_hook(lambda m, i, o: mlm_rows.append(o.shape[1]))
    try:
        model.loss(torch.rand(B, 3, 64, 64), mask_t=mask, mask_next=mask_next)
    finally:
        hook.remove()
    assert mlm_rows == [num_masked]  # not 1 + N + (N - num_masked)

    positions = masked_positions(mask, num_masked)

    def step(release):
        model.zero_grad(set_to_none=True)
        enc = model.encode(noised['x_t'])
        if release:  # the whole sequence over the whole vocabulary, then the masked positions
            full = model.neck.score(model.neck.features(enc, noised['indices'], mask))
            logits = full[:, 1:1 + N].gather(1, positions[..., None].expand(-1, -1, full.shape[-1]))
        else:
            logits = model.neck(enc, noised['indices'], mask, positions=positions)
        loss = model.head(logits, noised['target'], positions)
        loss.backward()
        return loss.detach(), logits.detach(), _grads(model)

    loss_full, logits_full, grads_full = step(True)
    loss_fast, logits_fast, grads_fast = step(False)
    assert logits_fast.shape == (B, num_masked, model.neck.vocab_size)
    torch.testing.assert_close(logits_fast, logits_full, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss_fast, loss_full, rtol=1e-6, atol=1e-6)
    assert grads_fast.keys() == grads_full.keys() and len(grads_full) > 10
    for k in grads_full:
        torch.testing.assert_close(grads_fast[k], grads_full[k], rtol=1e-6, atol=1e-6, msg=k)


def test_inference_blocks_sum_in_place_with_the_same_result():
    """Without autograd, a ViT block in its inference form (the frozen token predictor's) sums
    its residuals in place into the fresh branch outputs: bit-identical to the autograd path, its input untouched, and under
    autocast (bf16 branches, float32 stream) the stream keeps the dtype it has with autograd."""
    from addp_mm.models.layers import build_blocks
    torch.manual_seed(0)
    block = optimize_for_inference(build_blocks(1, 32, 2)[0].eval())
    x = torch.randn(2, 5, 32)
    kept = x.clone()
    with_grad = block(x)
    with torch.no_grad():
        without = block(x)
    assert torch.equal(without, with_grad) and torch.equal(x, kept)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp_grad = block(x)
        with torch.no_grad():
            amp = block(x)
    assert amp.dtype == amp_grad.dtype == torch.float32 and torch.equal(amp, amp_grad)
