"""The toy pipeline's evaluation side (tools/toy_metrics.py, configs/toy/): the digit classifier and
toy FID, the scalars.json readers, and the downstream runs from a backbone.pth as a pretraining
exports it (real digits written by tools/demo_data.make_digits)."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import tool_in_process
from mmengine.config import Config
from PIL import Image

import toy_metrics
from addp_mm.models.backbones import ADDPViT
from demo_data import make_digits

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy') / 'digits'
    make_digits(str(out))
    return str(out)


def _export_backbone(path, img_size=32, seed=0):
    """A random toy encoder saved as ADDPPretrainRunner.export_backbone writes it (the pretraining
    configs' encoder: pre_norm, final_norm, raw tokens)."""
    torch.manual_seed(seed)
    enc = ADDPViT(arch='demo', img_size=img_size, patch_size=4, pre_norm=True, final_norm=True,
                  out_type='raw', init_mode='release')
    enc.init_weights()
    state = {k: v.detach().clone() for k, v in enc.state_dict().items()}
    meta = dict(source='test', img_size=[img_size] * 2, patch_size=4)
    torch.save(dict(state_dict=state, meta=meta), path)
    return state


def test_toy_fid_separates_noise_from_digits(digits, tmp_path):
    clf = tmp_path / 'clf.pth'
    acc = toy_metrics.train_digit_classifier(digits, str(clf), quick=True)
    assert acc > 0.8, acc  # measured 0.891 (3 epochs); chance 0.1
    assert toy_metrics.digit_classifier_accuracy(
        toy_metrics.load_digit_classifier(str(clf)), digits) == acc  # from the saved file
    noise = tmp_path / 'noise'
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):  # another size and mode than the digits: read as 32-px grayscale
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(noise / f'{i}.png')
    train, val = osp.join(digits, 'train'), osp.join(digits, 'val')
    same = toy_metrics.toy_fid(str(clf), val, val)
    digits_fid = toy_metrics.toy_fid(str(clf), train, val)
    noise_fid = toy_metrics.toy_fid(str(clf), str(noise), val)
    assert abs(same) < 1e-6
    assert digits_fid > 0
    assert noise_fid > 20 * digits_fid, (noise_fid, digits_fid)


def _write_run(work_dir, stamp, rows):
    vis = work_dir / stamp / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in rows))


def test_scalars_readers_use_the_latest_run(tmp_path):
    _write_run(tmp_path, '20260101_000000',
               [dict(loss=9.0, iter=1, step=1), {'accuracy/top1': 99.0, 'step': 1}])
    rows = [dict(lr=1e-3, loss=2.0 - 0.1 * i, iter=10 * i, step=10 * i) for i in range(1, 6)]
    rows.insert(2, {'accuracy/top1': 40.0, 'step': 1})
    rows.append({'accuracy/top1': 62.5, 'step': 2})
    _write_run(tmp_path, '20260102_000000', rows)
    assert toy_metrics.read_val_metric(str(tmp_path)) == 62.5
    assert toy_metrics.read_val_metric(str(tmp_path), key='lr') == 1e-3
    with pytest.raises(KeyError, match='accuracy/top5'):
        toy_metrics.read_val_metric(str(tmp_path), key='accuracy/top5')
    out = toy_metrics.plot_loss_curve(str(tmp_path), str(tmp_path / 'plots' / 'loss.png'))
    with Image.open(out) as img:
        assert img.size == (600, 400)
        assert np.asarray(img.convert('L')).std() > 5  # something is drawn
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        toy_metrics.read_val_metric(str(tmp_path / 'plots'))


def test_backbone_file_loads_through_init_cfg_with_resized_positions(tmp_path):
    """A 24-px export (6x6 positions) into the 32-px downstream encoder (8x8)."""
    from mmpretrain.registry import MODELS
    state = _export_backbone(tmp_path / 'backbone.pth', img_size=24)
    cfg = Config.fromfile(osp.join(ROOT, toy_metrics.DOWNSTREAM_CONFIGS['linear']))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'backbone.pth'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    got = model.backbone.state_dict()
    assert got['pos_embed'].shape == (1, 65, 64) and state['pos_embed'].shape == (1, 37, 64)
    for key in ('patch_embed.proj.weight', 'blocks.3.mlp.fc2.weight', 'pre_norm.weight',
                'norm.bias'):
        torch.testing.assert_close(got[key], state[key], rtol=0, atol=0)
    torch.testing.assert_close(got['pos_embed'][:, 0], state['pos_embed'][:, 0], rtol=0, atol=0)


def test_downstream_command_reads_what_it_is_given(tmp_path):
    """The command of a downstream run: the backbone file through --pretrained (absent: random
    init), the data root where every loader reads it, the seed; --quick shortens it. (The runs
    themselves: tests/test_toy_pipeline.py.)"""
    cmd = toy_metrics.downstream_command('linear', 'b/backbone.pth', 3, str(tmp_path / 'w'),
                                         data_root='d/digits', quick=True)
    assert cmd[cmd.index('--pretrained') + 1] == osp.abspath('b/backbone.pth')
    options = cmd[cmd.index('--cfg-options') + 1:]
    assert 'randomness.seed=3' in options and 'train_cfg.max_epochs=1' in options
    assert f'data_root={osp.abspath("d/digits")}' in options
    # a path variable: tools/train.py carries it into every loader
    from addp_mm.engine.config import cfg_options_dict, load_config
    cfg = load_config(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), cmd[2]),
                      cfg_options_dict(options))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == osp.abspath('d/digits'), loader
    scratch = toy_metrics.downstream_command('finetune10', None, 0, str(tmp_path / 'w'))
    assert '--pretrained' not in scratch and 'train_cfg.max_epochs=1' not in scratch
    assert scratch[2] == toy_metrics.DOWNSTREAM_CONFIGS['finetune10']


def test_run_downstream_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match='linear'):
        toy_metrics.run_downstream('knn', None, 0, str(tmp_path))


@pytest.mark.slow
def test_demo_linear_probe_beats_chance(digits, tmp_path):
    """The MAE linear-probing protocol at demo size (the configs/imagenet linear-probe recipe's
    frozen encoder + affine-free BN + linear head) on the digits, from a random encoder: the first
    3 of its 15 epochs (the config's schedule), about 7 s in this process. Chance is 10 % (10
    classes, 359 val digits); measured 63.5 % after 3 epochs and 74.4 % after 15 (seed 0); > 50 %
    (P(>= 180 of 359 right by chance) < 1e-60) keeps a wide margin. (run_downstream itself: the
    toy chain.)"""
    work = tmp_path / 'probe'
    cmd = toy_metrics.downstream_command('linear', None, 0, str(work), data_root=digits)
    assert cmd[1] == osp.join(ROOT, 'tools', 'train.py')  # run here by its main
    tool_in_process('train', cmd[2:] + ['train_cfg.max_epochs=3', 'train_cfg.val_interval=3'],
                    ROOT)
    acc = toy_metrics.read_val_metric(str(work))
    assert acc > 50.0, acc
