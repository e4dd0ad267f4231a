"""What the three edits do on the toy chain's trained models (the numbers of
docs/user_guides/generate_and_edit.md, on fewer digits and one seed).

``tests/assets/toy_chain/`` holds the ADDP encoder, decoder and tokenizer of ``python
tools/run_toy_pipeline.py --skip-downstream --edits`` in fp16 (``generation.pth``, written by
``tools/toy_metrics.py:generation_checkpoint``) and its digit classifier (``digit_classifier.pth``).
The digits are scikit-learn's (``tools/demo_data.py:make_digits``, the split the chain used);
``NUM_DIGITS`` val digits drawn at random (seed 0: every class) are edited with
``tools/toy_metrics.py:edit_metrics`` at sampler seed 0 and the chain's 8 steps. The margins
below are about half of what this measures on this machine (the measured values are in each
assertion's comment)."""
import os.path as osp

import pytest
import torch

from conftest import ROOT, tool

ASSETS = osp.join(ROOT, 'tests', 'assets', 'toy_chain')
# the edits (the module's fixture, 12 s) are made once: its tests run first, in one worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('toy_edits')]
CONFIG = osp.join(ROOT, 'configs', 'toy', 'addp_vit-demo-p4_1xb32-2k_digits-32px.py')
NUM_DIGITS = 64
STEPS = 8


@pytest.fixture(scope='module')
def edits(tmp_path_factory):
    from demo_data import make_digits

    from addp_mm.apis import build_generation_model
    from addp_mm.models.generation import build_sampler
    tm = tool('toy_metrics')
    root = tmp_path_factory.mktemp('toy_edits')
    make_digits(str(root / 'digits'))
    images, labels, _ = tm.class_folder_split(str(root / 'digits' / 'val'), 32)
    torch.manual_seed(0)
    order = torch.randperm(len(labels))[:NUM_DIGITS]  # every class, not the first folders only
    model, cfg = build_generation_model(CONFIG, osp.join(ASSETS, 'generation.pth'), 'cpu')
    sampler = build_sampler(cfg.get('sampler'), num_steps=STEPS)
    classifier = tm.load_digit_classifier(osp.join(ASSETS, 'digit_classifier.pth'))
    return tm.edit_metrics(model, sampler, classifier, images[order].expand(-1, 3, -1, -1),
                           labels[order], seeds=(0,))


def test_the_known_tokens_stay_and_the_pixels_follow_them(edits):
    for name, known in edits['known'].items():
        assert known['checked_tokens'] > 0 and known['known_token_mismatches'] == 0, name
        by_distance = known['by_distance']
        # the region itself is generated anew (measured mean 41.9 / 61.1 grey levels); from 2
        # tokens on, the pixels are the VQ reconstruction's up to the decoder's GroupNorm
        # statistics, which every token moves (measured 2.4-3.8, max 32)
        assert by_distance['0']['mean'] > 25, name
        far = [row for d, row in by_distance.items() if int(d) >= 2]
        assert far and all(row['mean'] < 7 and row['max'] < 80 for row in far), (name, far)


def test_inpainting_is_recognised_between_the_fills_and_the_ceiling(edits):
    share = edits['classified_as_original']
    for name in edits['known']:
        inpainted = share[f'{name}_inpainted'][0]
        # measured: lower half 56 %, centre box 55 %; grey fill 30 / 14 %, black fill 20 / 25 %,
        # unconditional samples 8 %, the VQ reconstruction 97 %
        assert inpainted >= max(share[f'{name}_grey_fill'], share[f'{name}_black_fill']) + 0.15
        assert inpainted >= share['unconditional'][0] + 0.25, name
        assert share['reconstruction'] >= inpainted + 0.2, name
    assert share['reconstruction'] >= 0.9


def test_variations_follow_the_ratio_and_move_further_with_it(edits):
    rows = [edits['variations'][r] for r in sorted(edits['variations'], key=float)]
    ratios = sorted(float(r) for r in edits['variations'])
    for ratio, row in zip(ratios, rows):
        assert row['regenerated'][0] == pytest.approx(ratio)  # 16, 32, 48 of the 64 tokens
        # a re-generated token may come back as the image's own (measured 94 % change)
        assert 0.85 * ratio <= row['changed'][0] <= ratio
    # measured: pixels 14.4 / 25.6 / 35.4 grey levels, features 2.11 / 3.10 / 3.78, still
    # classified as the original 62 / 39 / 23 %
    for lower, higher in zip(rows, rows[1:]):
        assert higher['pixel_distance'][0] >= lower['pixel_distance'][0] + 5
        assert higher['feature_distance'][0] >= lower['feature_distance'][0] + 0.3
        assert higher['classified_as_original'][0] < lower['classified_as_original'][0]
