"""Deployment: the demo classifier, segmenter and detector (backbone + neck) exported with
``tools/deploy/export.py`` give PyTorch's outputs in ONNX Runtime (random weights; a relative
tolerance on the largest output), including ViTDet windows with padding and relative position, a
second input size and batch with ``--dynamic``, and the ``torch.export`` format; the export path
leaves eager PyTorch unchanged; what cannot be exported is refused with the option to change."""
import json
import os.path as osp

import pytest
import torch

from addp_mm.errors import UsageError
from conftest import require, tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS = 'configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py'
SEG = 'configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py'
DET = 'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'
# outputs within 1e-4 of the largest |output| (measured: 5e-7 to 1.3e-6)
RTOL = 1e-4


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """A random-weight checkpoint of each demo model, as training would write it."""
    from addp_mm.apis.export import build_model
    out = {}
    for name, config in dict(cls=CLS, seg=SEG, det=DET).items():
        torch.manual_seed(0)
        model, _ = build_model(osp.join(ROOT, config), None)
        with torch.no_grad():  # no all-zero tables: every part of the graph shows in the outputs
            for n, p in model.named_parameters():
                if 'rel_pos' in n or 'pos_embed' in n:
                    p.normal_(0, 0.5)
        path = str(tmp_path_factory.mktemp('ckpt') / f'{name}.pth')
        torch.save(dict(state_dict=model.state_dict()), path)
        out[name] = path
    return out


def _export(config, checkpoint, out, *flags):
    report = tool('deploy.export').main([osp.join(ROOT, config), checkpoint, '--out', str(out),
                                         '--repeats', '1', *flags])
    assert report.checks, 'the export was not checked'
    for check in report.checks:
        assert check['max_rel'] < RTOL, check
    sidecar = json.load(open(str(out) + '.json'))
    assert sidecar['checks'] == report.checks and sidecar['output_names'] == report.output_names
    return report


def test_classifier_exports_with_a_dynamic_size_and_batch(checkpoints, tmp_path):
    """Global attention with the class token; the position table is interpolated in the graph at
    the second size."""
    report = _export(CLS, checkpoints['cls'], tmp_path / 'cls.onnx', '--dynamic')
    assert report.output_names == ['logits'] and report.input_shape == [2, 3, 128, 128]
    assert [c['shape'] for c in report.checks] == [[2, 3, 128, 128], [1, 3, 144, 160]]
    assert report.mean == pytest.approx([123.675, 116.28, 103.53])


def test_segmenter_exports_logits_at_the_input_size(checkpoints, tmp_path):
    report = _export(SEG, checkpoints['seg'], tmp_path / 'seg.onnx')
    assert report.output_names == ['seg_logits']
    ort = require('onnxruntime')
    outputs = ort.InferenceSession(report.file).get_outputs()
    assert outputs[0].shape == [1, 5, 128, 128]


def test_vitdet_backbone_and_neck_export_with_padded_windows(checkpoints, tmp_path):
    """160 px: a 10x10 patch grid in 4x4 windows (padded to 12x12) with relative position, no
    class token; the second size (176 x 192: an 11 x 12 grid) pads differently."""
    report = _export(DET, checkpoints['det'], tmp_path / 'det.onnx', '--dynamic',
                     '--shape', '160', '160')
    assert report.output_names == [f'feat{i}' for i in range(5)]
    assert [c['shape'] for c in report.checks] == [[2, 3, 160, 160], [1, 3, 176, 192]]


def test_torch_export_program(checkpoints, tmp_path):
    report = _export(DET, checkpoints['det'], tmp_path / 'det.pt2', '--format',
                     'torch_export', '--dynamic', '--shape', '160', '160')
    assert [c['shape'] for c in report.checks] == [[1, 3, 160, 160], [1, 3, 176, 192]]


def test_what_cannot_be_exported_is_refused_with_the_option(checkpoints, tmp_path):
    export = tool('deploy.export')
    with pytest.raises(UsageError, match='--dynamic: the segmenter exports at one size'):
        export.main([osp.join(ROOT, SEG), checkpoints['seg'], '--dynamic',
                     '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(UsageError, match='--shape 120 128: .*multiples of the patch size 16'):
        export.main([osp.join(ROOT, CLS), checkpoints['cls'], '--shape', '120', '128',
                     '--out', str(tmp_path / 'x.onnx')])
    # a checkpoint of another model: the loader's message names the option
    from addp_mm.checkpoint import CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError, match='CHECKPOINT'):
        export.main([osp.join(ROOT, CLS), checkpoints['seg'], '--out', str(tmp_path / 'x.onnx')])


def test_export_branches_equal_eager():
    """The branches taken while exporting (always pad, gather the crop, always resize the tables,
    attention written out) compute what eager PyTorch computes: a model of another grid,
    windows with padding, called with the export flag forced on."""
    from unittest import mock

    from addp_mm.models.backbones import ADDPViT
    torch.manual_seed(0)
    model = ADDPViT(arch='demo', img_size=128, with_cls_token=False, window_size=3,
                    window_block_indexes=[0, 2], use_rel_pos=True).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'rel_pos' in n:
                p.normal_()
    x = torch.randn(2, 3, 160, 144)  # a 10 x 9 grid: padded to 12 x 9 windows of 3
    with torch.no_grad():
        eager = model(x)[0]
        with mock.patch('addp_mm.models.layers.vit.is_exporting', return_value=True), \
                mock.patch('addp_mm.models.layers.pos_embed.is_exporting', return_value=True):
            exported_form = model(x)[0]
    torch.testing.assert_close(exported_form, eager, rtol=1e-5, atol=1e-5)
