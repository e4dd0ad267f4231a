"""tools/gpu_check.py on this CPU machine: without CUDA it only says what it would run (exit 0, in
seconds); ``--cpu`` runs the pure-PyTorch parts at demo size and writes the report whose format a
GPU machine's report has (JSON + Markdown), the two-process part included."""
import json
import os.path as osp
import sys
import time

import pytest
import torch
from conftest import ROOT, run_command, tool


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU machine runs the real check')
def test_without_cuda_it_lists_the_parts_and_exits_0(tmp_path):
    start = time.perf_counter()
    proc = run_command([sys.executable, osp.join(ROOT, 'tools', 'gpu_check.py'), '--out-dir',
                        str(tmp_path / 'report')])
    assert time.perf_counter() - start < 60
    for part in tool('gpu_check').PARTS:
        assert f'  {part}' in proc.stdout, proc.stdout
    assert 'no CUDA device here, nothing run' in proc.stdout
    assert not (tmp_path / 'report').exists()  # nothing written on a dry run


@pytest.mark.slow
def test_cpu_run_writes_the_report(reference_dir, tmp_path, backbone_reference_rows_only):
    """The reference part computes the backbone's rows only here (every row:
    tests/test_verify_reference.py)."""
    out = tmp_path / 'report'
    rc = tool('gpu_check').main(['--cpu', '--out-dir', str(out), '--reference', reference_dir])
    assert rc == 0
    report = json.load(open(out / 'gpu_check.json'))
    assert report['cpu'] and report['arch'] == 'demo' and report['machine']['device'] == 'cpu'
    parts = report['parts']
    assert list(parts) == ['reference', 'pretrain', 'generation', 'ddp', 'detector']
    assert parts['reference']['status'] == 'passed'
    assert [r['name'] for r in parts['reference']['rows']] == [
        'encoder_tokens_in', 'encoder_out', 'encoder_block_outputs', 'ft_missing_keys',
        'ft_unexpected_keys', 'ft_features', 'ft_pooled', 'ft_logits']
    assert all(r['passed'] for r in parts['reference']['rows'])
    names = [r['name'] for r in parts['pretrain']['rows']]
    assert 'pretrain step fp32' in names and all('rel. diff to fp32' in r['note']
                                                for r in parts['pretrain']['rows']
                                                if 'memory' not in r['name'])
    assert any(r['name'].startswith('generation 2 steps fp32') for r in parts['generation']['rows'])
    ddp = parts['ddp']
    assert ddp['status'] == 'passed' and 'gloo' in ddp['reason']
    assert ddp['rows'][0]['value'] < 1e-5
    assert parts['detector']['status'] == 'skipped' and 'CUDA' in parts['detector']['reason']
    md = open(out / 'gpu_check.md').read()
    for name, part in parts.items():
        assert f"| {name} | {part['status']} |" in md
    assert '## reference' in md and '## pretrain' in md
