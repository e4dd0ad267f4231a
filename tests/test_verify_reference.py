"""tools/verify_reference.py on the reference folder: every recorded output is reproduced."""
import os
import os.path as osp
import subprocess
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
REQUIRED = [
    # backbone
    'encoder_out', 'encoder_block_outputs', 'ft_features', 'ft_logits', 'ft_missing_keys', 'ft_unexpected_keys',
    # tokenizer, token predictor, pretraining step
    'vq_indices', 'vq_zq', 'vq_recon', 'tp_probs', 'tp_pred_emb', 'x_t', 'xt_encoder_out', 'decoder_logits',
    'loss', 'mask_ratio_probs', 'mask_ratios',
    # generation trajectory
    'gen_logits', 'gen_sampled_ids', 'gen_tokens', 'gen_masks', 'gen_xt_next', 'gen_img',
]


def run_tool(path):
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'verify_reference.py'), path],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_every_row_passes_on_the_reference(reference_dir):
    proc = run_tool(reference_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    for key in REQUIRED:
        assert key in rows, f'no row for {key}'
        assert ' PASS' in rows[key] and ' FAIL' not in rows[key], rows[key]
    assert ' 0 failed' in proc.stdout


def test_a_perturbed_variant_fails_loudly(reference_dir, tmp_path):
    """Any variant name works, and a wrong recorded value makes the tool exit non-zero."""
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
    proc = run_tool(str(variant))
    assert proc.returncode == 1
    bad = [line for line in proc.stdout.splitlines() if 'FAIL' in line]
    assert len(bad) == 1 and bad[0].startswith('encoder_out'), bad


def test_missing_folder_is_a_clear_error(tmp_path):
    proc = run_tool(str(tmp_path / 'nowhere'))
    assert proc.returncode != 0 and 'nowhere' in proc.stderr
