"""The toy chain end to end (``tools/run_toy_pipeline.py --quick``) on digits written here: every
file handoff (tokenizer -> token predictor -> ADDP -> generation -> evaluation) and every row of
the results table. The numbers are not checked (a few iterations per step)."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_toy_pipeline_quick(tmp_path):
    data = tmp_path / 'data'
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='2')
    subprocess.run([sys.executable, 'tools/make_demo_data.py', str(data), '--only', 'digits'],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    work = tmp_path / 'toy'
    proc = subprocess.run([sys.executable, 'tools/run_toy_pipeline.py', '--quick', '--device',
                           'cpu', '--data-root', str(data / 'digits'), '--work-dir', str(work)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # each step's output, read by the next one
    for f in ('tokenizer/tokenizer.pth', 'predictor/token_predictor.pth', 'addp/iter_3.pth',
              'addp/backbone.pth', 'samples_grid.png', 'reconstructions.png', 'results.md',
              'results.json'):
        assert (work / f).is_file(), f
    assert len(list((work / 'samples').glob('*.png'))) == 8
    # the config each training run used (dumped by mmengine): the previous step's file, both as
    # the top-level variable and where the model reads it
    from mmengine.config import Config
    tok = str(work / 'tokenizer' / 'tokenizer.pth')
    tp = str(work / 'predictor' / 'token_predictor.pth')
    cfg = Config.fromfile(str(work / 'predictor' / 'mage-token-predictor_digits-32px.py'))
    assert cfg.tokenizer_checkpoint == tok and cfg.model.tokenizer.checkpoint == tok
    cfg = Config.fromfile(str(work / 'addp' / 'addp_vit-toy_digits-32px.py'))
    assert cfg.model.target_generator.tokenizer.checkpoint == tok
    assert cfg.model.target_generator.token_predictor.checkpoint == tp
    assert cfg.tokenizer_checkpoint == tok and cfg.token_predictor_checkpoint == tp
    results = json.loads((work / 'results.json').read_text())
    assert results['files']['backbone'] == str(work / 'addp' / 'backbone.pth')
    table = (work / 'results.md').read_text()
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from run_toy_pipeline import DOWNSTREAM_ROWS, ROWS
    for name in [r[0] for r in ROWS] + [r[0] for r in DOWNSTREAM_ROWS]:
        assert f'| {name} |' in table, name
    assert '| total |' in table
    assert table in proc.stdout  # printed at the end
