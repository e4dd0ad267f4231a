"""tools/verify_reference.py on the reference folder: every output recorded by the released
implementation is reproduced, one row each (this is the one place the suite runs the reference
rows: tokenizer, token predictor, backbone, fine-tuning classifier, pretraining step, mask
schedule, generation trajectory); a wrong recorded value fails loudly."""
import os
import os.path as osp

import pytest
import torch

from cli import UsageError
from verify_reference import main as verify

# every row the tool prints (44), by key
ROWS = [
    # backbone and the released fine-tuning classifier
    'encoder_tokens_in', 'encoder_out', 'encoder_block_outputs', 'ft_missing_keys',
    'ft_unexpected_keys', 'ft_features', 'ft_pooled', 'ft_logits',
    # token predictor (MAGE file, released ADDP file)
    'tp_probs', 'tp_encoder_out', 'tp_pred_emb', 'tp_probs[official_addp]',
    # tokenizer (taming file, released ADDP and MAGE files)
    'vq_z', 'vq_zq', 'vq_indices', 'vq_emb_loss', 'vq_recon', 'x_t', 'vq_zq[embed_indices]',
    'gen_xt_next[tokenizer]', 'vq_indices[official_addp]', 'vq_indices[mage_token_predictor]',
    # decoder, loss, mask schedule
    'decoder_tokens_in', 'decoder_hidden', 'decoder_logits', 'loss_from_intermediates',
    'mask_ratio_probs', 'mask_ratios', 'model_mask_ratio_probs', 'model_mask_ratios',
    # the whole pretraining step
    'z_t', 'x_t', 'xt_encoder_tokens_in', 'xt_encoder_block_outputs', 'xt_encoder_out', 'loss',
    # the generation trajectory
    'gen_initial_mask', 'gen_logits', 'gen_sampled_ids', 'gen_tokens', 'gen_masks',
    'gen_mask_len', 'gen_xt_next', 'gen_img',
]


def run(path, capsys):
    threads = torch.get_num_threads()
    try:
        status = verify([str(path)])
    finally:
        torch.set_num_threads(threads)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return status, lines[1:-1], lines[-1]


def test_every_row_passes_on_the_reference(reference_dir, capsys):
    status, rows, summary = run(reference_dir, capsys)
    assert [r.split()[0] for r in rows] == ROWS, rows
    failed = [r for r in rows if ' PASS' not in r or ' FAIL' in r]
    assert not failed and status == 0, '\n'.join(failed)
    assert summary == f'{len(ROWS)} passed, 0 failed'


def test_a_perturbed_variant_fails_loudly(reference_dir, tmp_path, capsys,
                                          backbone_reference_rows_only):
    """Any variant name works, and a wrong recorded value makes the tool exit non-zero naming the
    row (only the backbone's rows are recomputed here: the other groups read other entries)."""
    variant = tmp_path / 'ref'
    variant.mkdir()
    for name in os.listdir(reference_dir):
        if name.startswith('vectors_'):
            continue
        os.symlink(osp.join(reference_dir, name), variant / name.replace('public', 'private'))
    src = next(n for n in os.listdir(reference_dir) if n.startswith('vectors_'))
    vectors = torch.load(osp.join(reference_dir, src), weights_only=True)
    vectors['encoder_out'] = vectors['encoder_out'] + 1e-3
    torch.save(vectors, variant / 'vectors_private.pt')
    status, rows, summary = run(variant, capsys)
    assert status == 1 and summary.endswith(' 1 failed')
    assert [r.split()[0] for r in rows if ' FAIL' in r] == ['encoder_out']


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match='nowhere'):
        verify([str(tmp_path / 'nowhere')])
