"""Deployment: the demo classifier, segmenter and detector (backbone + neck) exported with
``tools/deploy/export.py`` give PyTorch's outputs in ONNX Runtime (random weights; a relative
tolerance on the largest output), including ViTDet windows with padding and relative position, a
second input size and batch with ``--dynamic``, and the ``torch.export`` format; the export path
leaves eager PyTorch unchanged; what cannot be exported is refused with the option to change.
FILE.json alone feeds each file a demo image (``tools/deploy/run_onnx.py``: no PyTorch, no
OpenMMLab) as the toolbox's own test pipeline and data preprocessor do, and the detector's
PyTorch heads on the ONNX features (``detect_with_onnx_features``) give its own ``predict``."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

from addp_mm.errors import UsageError
from conftest import require, run_command, tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# the module's exports (its fixtures, 30 s) are made once: its tests run first, in one worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('export')]
CLS = 'configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py'
SEG = 'configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py'
DET = 'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'
# outputs within 1e-4 of the largest |output| (measured: 2e-7 to 1.3e-6)
RTOL = 1e-4
# the segmenter's test images at most 256 x 128 (the demo's 128 x 128 fits one crop): a 200 x 150
# image is resized to 171 x 128 and slid over with two 128-px crops
SEG_OPTIONS = ['--cfg-options', 'test_dataloader.dataset.pipeline.1.scale=(256,128)']


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
    assert sidecar['checks'] == report.checks and sidecar['outputs'] == report.outputs
    assert sidecar['schema'] == 'addp-mm-deploy/1'
    return report


@pytest.fixture(scope='module')
def exported(checkpoints, tmp_path_factory):
    """The three demo models exported once: the classifier and the detector with --dynamic
    (the detector traced at 160 px), the segmenter at its crop size."""
    out = tmp_path_factory.mktemp('export')
    return dict(
        cls=_export(CLS, checkpoints['cls'], out / 'cls.onnx', '--dynamic'),
        seg=_export(SEG, checkpoints['seg'], out / 'seg.onnx', *SEG_OPTIONS),
        det=_export(DET, checkpoints['det'], out / 'det.onnx', '--dynamic',
                    '--shape', '160', '160'))


def test_classifier_exports_with_a_dynamic_size_and_batch(exported):
    """Global attention with the class token; the position table is interpolated in the graph at
    the second size."""
    report = exported['cls']
    assert report.output_names == ['logits']
    assert report.input['shape'] == ['batch', 3, 'height', 'width']
    assert [c['shape'] for c in report.checks] == [[2, 3, 128, 128], [1, 3, 144, 160]]
    assert report.input['mean'] == [123.675, 116.28, 103.53]


def test_segmenter_exports_logits_at_the_input_size(exported):
    report = exported['seg']
    assert report.output_names == ['seg_logits']
    ort = require('onnxruntime')
    outputs = ort.InferenceSession(report.file).get_outputs()
    assert outputs[0].shape == [1, 5, 128, 128]


def test_vitdet_backbone_and_neck_export_with_padded_windows(exported):
    """160 px: a 10x10 patch grid in 4x4 windows (padded to 12x12) with relative position, no
    class token; the second size (176 x 192: an 11 x 12 grid) pads differently."""
    report = exported['det']
    assert report.output_names == [f'feat{i}' for i in range(5)]
    assert [c['shape'] for c in report.checks] == [[2, 3, 160, 160], [1, 3, 176, 192]]


def test_torch_export_program(checkpoints, tmp_path):
    """``--format torch_export`` (the classifier: the ONNX exporter above takes the detector
    through the same ``torch.export`` with dynamic sizes)."""
    report = _export(CLS, checkpoints['cls'], tmp_path / 'cls.pt2', '--format',
                     'torch_export', '--dynamic')
    assert [c['shape'] for c in report.checks] == [[1, 3, 128, 128], [1, 3, 144, 160]]


def test_what_cannot_be_exported_is_refused_with_the_option(checkpoints, tmp_path):
    export = tool('deploy.export')
    with pytest.raises(UsageError, match='--dynamic: the segmenter exports at one size'):
        export.main([osp.join(ROOT, SEG), checkpoints['seg'], '--dynamic',
                     '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(UsageError, match=r'--shape 160 160: the segmenter slides 128 x 128 crops .*'
                                         '--shape 128 128'):
        export.main([osp.join(ROOT, SEG), checkpoints['seg'], '--shape', '160', '160',
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


# ------------------------------------------------------------------ feeding the file by FILE.json
NOT_IMPORTED = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'addp_mm')
# demo images resized to other sizes (PNG: OpenCV and Pillow decode the same pixels), so that the
# pipelines resize and crop: (file under data/demo, (width, height))
FED_IMAGES = dict(
    cls=[('imagenet/val/star/star_00000.jpg', (200, 150)),
         ('imagenet/val/circle/circle_00001.jpg', (131, 177))],
    seg=[('ade/images/validation/ade_demo_val_00000.jpg', (200, 150))],
    det=[('coco/val2017/000000000001.jpg', (200, 150))])


@pytest.fixture(scope='module')
def fed(exported, demo_cwd, tmp_path_factory):
    """Each exported file run on its images by tools/deploy/run_onnx.py in a process that
    imports neither PyTorch nor OpenMMLab (checked): ``{task: [(image, its .npz)]}``."""
    from PIL import Image
    out = tmp_path_factory.mktemp('fed')
    runs, fed = [], {}
    for task, images in FED_IMAGES.items():
        fed[task] = []
        for i, (src, size) in enumerate(images):
            image = str(out / f'{task}{i}.png')
            Image.open(demo_cwd / 'data' / 'demo' / src).convert('RGB').resize(
                size, Image.Resampling.BICUBIC).save(image)
            fed[task].append((image, str(out / task / f'{task}{i}.npz')))
        runs.append('|'.join([exported[task].file, *[im for im, _ in fed[task]],
                              '--out-dir', str(out / task)]))
    code = ('import sys\nsys.path.insert(0, sys.argv[1])\nfrom deploy import run_onnx\n'
            'for run in sys.argv[2:]:\n    run_onnx.main(run.split("|"))\n'
            f'print("IMPORTED", sorted(set(sys.modules) & {set(NOT_IMPORTED)}))')
    proc = run_command(['python', '-c', code, osp.join(ROOT, 'tools'), *runs])
    assert 'IMPORTED []' in proc.stdout, proc.stdout
    return {task: [(image, dict(np.load(npz))) for image, npz in pairs]
            for task, pairs in fed.items()}


def _toolbox(config, checkpoint, cfg_options=None):
    """The model as tools/test.py builds it and ``image -> (data, preprocessed batch)`` through
    the config's own test pipeline and data preprocessor."""
    from mmengine.dataset import pseudo_collate

    from addp_mm.apis.export import build_inference_pipeline, build_model
    model, cfg = build_model(osp.join(ROOT, config), checkpoint, cfg_options)
    pipeline = build_inference_pipeline(cfg)

    def prepare(image):
        data = pseudo_collate([pipeline(dict(img_path=image))])
        with torch.no_grad():
            return data, model.data_preprocessor(data, False)
    return model, prepare


def _rel(got, ref):
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_classifier_fed_by_its_json_gives_the_toolbox_logits(exported, fed, checkpoints):
    """Short side to 128 (Pillow, bicubic), centre crop 128, RGB, mean / std: the same input
    tensor as mmpretrain's pipeline + data preprocessor (measured: identical), the same logits
    (measured: 2.3e-7 of the largest) and class."""
    spec = json.load(open(exported['cls'].file + '.json'))
    assert spec['preprocess'] == [
        dict(op='resize_edge', edge='short', size=128, interpolation='bicubic', backend='pillow'),
        dict(op='center_crop', size=[128, 128]), dict(op='normalize')]
    assert spec['input']['channel_order'] == 'RGB' and spec['input']['layout'] == 'NCHW'
    assert spec['classes'] == ['circle', 'square', 'triangle', 'star']
    model, prepare = _toolbox(CLS, checkpoints['cls'])
    for image, result in fed['cls']:
        inputs = prepare(image)[1]['inputs']
        np.testing.assert_allclose(result['inputs'], inputs.numpy(), rtol=0, atol=1e-6)
        with torch.no_grad():
            logits = model(inputs, mode='tensor').numpy()
        assert _rel(result['logits'], logits) < RTOL
        assert result['scores'].argmax() == logits.argmax()


def test_segmenter_fed_by_its_json_slides_as_mmseg(exported, fed, checkpoints):
    """Resized within 256 x 128 (OpenCV, bilinear) to 171 x 128, two 128-px crops at stride 85
    averaged where they overlap: mmseg's slide inference (measured: 6.7e-7 of the largest logit),
    and its label map at the image's size (measured: every pixel the same)."""
    spec = json.load(open(exported['seg'].file + '.json'))
    assert spec['inference'] == dict(mode='slide', crop_size=[128, 128], stride=[85, 85],
                                     align_corners=False)
    assert spec['classes'][0] == 'background' and len(spec['classes']) == 5
    options = {'test_dataloader.dataset.pipeline.1.scale': (256, 128)}
    model, prepare = _toolbox(SEG, checkpoints['seg'], options)
    (image, result), = fed['seg']
    data, batch = prepare(image)
    np.testing.assert_allclose(result['inputs'], batch['inputs'].numpy(), rtol=0, atol=1e-6)
    assert result['inputs'].shape == (1, 3, 128, 171)
    with torch.no_grad():
        logits = model.inference(batch['inputs'], [s.metainfo for s in batch['data_samples']])
        label_map = model.test_step(data)[0].pred_sem_seg.data[0].numpy()
    assert _rel(result['seg_logits'], logits.numpy()) < RTOL
    assert result['label_map'].shape == label_map.shape == (150, 200)
    assert (result['label_map'] == label_map).mean() > 0.999


def test_detector_features_fed_by_its_json(exported, fed, checkpoints):
    """Resized within 128 x 128 to 128 x 96, padded (after normalising) to multiples of 32: the
    input mmdet's data preprocessor gives (measured: identical), and the pyramid ``extract_feat``
    computes (measured: within 1.0e-6 of the largest)."""
    spec = json.load(open(exported['det'].file + '.json'))
    assert spec['preprocess'][-1] == dict(op='pad', size_divisor=32, value=0.)
    assert [o['stride'] for o in spec['outputs']] == [4, 8, 16, 32, 64]
    model, prepare = _toolbox(DET, checkpoints['det'])
    (image, result), = fed['det']
    inputs = prepare(image)[1]['inputs']
    np.testing.assert_allclose(result['inputs'], inputs.numpy(), rtol=0, atol=1e-6)
    assert result['inputs'].shape == (1, 3, 96, 128)
    with torch.no_grad():
        feats = model.extract_feat(inputs)
    for i, feat in enumerate(feats):
        assert _rel(result[f'feat{i}'], feat.numpy()) < RTOL, i


def test_detect_with_onnx_features_equals_the_detectors_predict(exported, demo_cwd, checkpoints,
                                                               tmp_path):
    """ONNX Runtime's features through the detector's own RPN and RoI heads: the boxes, scores,
    labels and masks of mmdet's ``predict`` (test_step) on the same image. Random weights give 20
    boxes (max_per_img) at the config's score_thr 0.05; measured: boxes within 1.9e-6 px, scores
    within 4.5e-8, every label and mask pixel the same."""
    from PIL import Image

    from addp_mm.apis.export import detect_with_onnx_features
    image = str(tmp_path / 'det.png')
    Image.open(demo_cwd / 'data' / 'demo' / 'coco' / 'val2017' / '000000000002.jpg').resize(
        (150, 200), Image.Resampling.BICUBIC).save(image)
    model, prepare = _toolbox(DET, checkpoints['det'])
    data, _ = prepare(image)
    with torch.no_grad():
        ref = model.test_step(data)[0].pred_instances
    got = detect_with_onnx_features(model, exported['det'].file, data)[0].pred_instances
    assert len(ref) >= 5 and len(got) == len(ref), (len(ref), len(got))
    assert torch.equal(got.labels, ref.labels)
    assert float((got.bboxes - ref.bboxes).abs().max()) < 1e-3  # pixels of the 150 x 200 image
    assert float((got.scores - ref.scores).abs().max()) < 1e-5
    assert got.masks.shape == ref.masks.shape == (len(ref), 200, 150)
    assert float((got.masks != ref.masks).float().mean()) < 1e-3


def test_a_static_file_and_another_size_or_an_unknown_step_are_named():
    """detect_with_onnx_features on an input of another size than a static file's: the option;
    run_onnx on a step FILE.json could not describe: the transform."""
    from types import SimpleNamespace

    from addp_mm.apis.export import build_model, detect_with_onnx_features
    model, _ = build_model(osp.join(ROOT, DET), None)
    session = SimpleNamespace(get_inputs=lambda: [SimpleNamespace(name='inputs',
                                                                 shape=[1, 3, 128, 128])])
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                         scale_factor=(1., 1.)))
    data = dict(inputs=[torch.zeros(3, 96, 128, dtype=torch.uint8)], data_samples=[sample])
    with pytest.raises(UsageError, match='takes 128 x 128 images.*gives 96 x 128.*--dynamic'):
        detect_with_onnx_features(model, session, data)
    run_onnx = tool('deploy.run_onnx')
    spec = dict(input=dict(channel_order='RGB'),
                preprocess=[dict(op='unsupported', transform='RandomFlip(prob=1.0)')])
    with pytest.raises(UsageError, match=r"RandomFlip\(prob=1.0\) has no step"):
        run_onnx.preprocess(np.zeros((8, 8, 3), np.uint8), spec)


def test_release_configs_json_steps_and_classes():
    """What FILE.json says for the release configs (no model built): COCO's Resize + Pad to
    1024 with the mean colour (BGR in the config, RGB and rounded in the json) and its 80 classes
    from mmdet's CocoDataset; ImageNet's short side 256 + centre crop 256 and 1000 classes."""
    from addp_mm.apis.export import _dataset_classes, _pipeline_steps
    from addp_mm.engine.config import load_config
    coco = load_config(
        osp.join(ROOT, 'configs/coco/mask-rcnn_vit-base-p16_addp-pre_lsj-100e_coco.py'))
    assert _pipeline_steps(coco, 'RGB') == [
        dict(op='resize_keep_ratio', max_long_edge=1024, max_short_edge=1024,
             interpolation='bilinear', backend='cv2'),
        dict(op='pad', size=[1024, 1024], value=[124, 116, 104])]
    assert len(_dataset_classes(coco)) == 80 and _dataset_classes(coco)[0] == 'person'
    imagenet = load_config(osp.join(
        ROOT, 'configs/imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py'))
    assert [s['op'] for s in _pipeline_steps(imagenet, 'RGB')] == ['resize_edge', 'center_crop']
    assert len(_dataset_classes(imagenet)) == 1000


# ------------------------------------------------------------------ the check fails a wrong file
def _edit_onnx(src, out, edit):
    """``src`` with its graph edited by ``edit(graph)``, saved as ``out``."""
    import onnx
    model = onnx.load(src)
    edit(model.graph)
    onnx.save(model, str(out))
    return str(out)


def _set_initializer(graph, name, change):
    from onnx import numpy_helper
    init = next(i for i in graph.initializer if i.name == name)
    init.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init).copy()), name))


def _perturbed(graph):
    """The patch embedding's weights off by 1 % (noise relative to each value)."""
    rng = np.random.default_rng(0)
    _set_initializer(graph, 'model.backbone.patch_embed.proj.weight',
                     lambda w: (w * (1 + 0.01 * rng.standard_normal(w.shape))).astype(w.dtype))


def _one_nan(graph):
    def nan(w):
        w.flat[0] = np.nan
        return w
    _set_initializer(graph, 'model.backbone.blocks.0.norm1.weight', nan)


def _fixed_size(graph):
    """The input fixed to the traced (2, 3, 128, 128): a dynamic export that is not."""
    for d, size in zip(graph.input[0].type.tensor_type.shape.dim, (2, 3, 128, 128)):
        d.dim_value = size


def _last_output_dropped(graph):
    graph.output.pop()


# wrong file -> (the exported file, what it is made from, the checkpoint the check compares with,
# the export's flags, what the one line says)
WRONG_FILES = {
    'perturbed initializer': ('cls', _perturbed, 'cls', ['--dynamic'],
                              r'at input \(2, 3, 128, 128\) the exported file\'s logits differs '
                              r'from PyTorch\'s by \d\.\de-0[123] of its largest'),
    "another model's weights": ('cls', None, 'cls_other', ['--dynamic'],
                                r'at input \(2, 3, 128, 128\) the exported file\'s logits differs '
                                r'from PyTorch\'s by \d\.\de-0[012] of its largest'),
    'a NaN initializer': ('cls', _one_nan, 'cls', ['--dynamic'],
                          r'at input \(2, 3, 128, 128\) .*logits differs from PyTorch\'s by inf'),
    'a fixed size checked at another': (
        'cls', _fixed_size, 'cls', ['--dynamic'],
        r'at input \(1, 3, 144, 160\) the exported file does not run \(.*[Ii]nvalid.*dimensions'),
    'a dropped output': (
        'det', _last_output_dropped, 'det', ['--dynamic', '--shape', '160', '160'],
        r'at input \(2, 3, 160, 160\) the exported file gives 4 outputs, PyTorch 5 '
        r'\(feat0, feat1, feat2, feat3, feat4\)'),
    'unchanged (control)': ('cls', lambda graph: None, 'cls', ['--dynamic'], None),
}


@pytest.fixture(scope='module')
def other_classifier(tmp_path_factory):
    """A checkpoint of the demo classifier with other random weights."""
    from addp_mm.apis.export import build_model
    torch.manual_seed(1)
    model, _ = build_model(osp.join(ROOT, CLS), None)
    path = str(tmp_path_factory.mktemp('ckpt') / 'cls_other.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


@pytest.mark.parametrize('wrong', list(WRONG_FILES))
def test_the_check_fails_a_file_that_does_not_compute_the_model(
        wrong, exported, checkpoints, other_classifier, tmp_path, monkeypatch, capsys):
    """tools/deploy/export.py, its exporter made to write a wrong file (the demo export edited
    with ``onnx``, or compared with another checkpoint): exit status 2 and one line naming the
    file, the input size and the difference; no FILE.json. The unchanged file passes the same
    way (measured: the perturbed patch embedding 1.5e-2 of the largest logit, another model's
    weights 0.76, the genuine export 4e-7)."""
    import shutil

    from addp_mm.apis import export as export_api
    from cli import run_tool
    task, edit, checkpoint, flags, message = WRONG_FILES[wrong]
    src = exported[task].file
    wrong_file = _edit_onnx(src, tmp_path / 'wrong.onnx', edit) if edit else src
    out = tmp_path / 'exported.onnx'
    (tmp_path / 'exported.onnx.json').write_text('{}')  # an earlier export's

    def export_onnx(wrapper, example, path, *args, **kwargs):  # the exporter "writes" it
        shutil.copy(wrong_file, path)
    monkeypatch.setattr(export_api, 'export_onnx', export_onnx)
    ckpt = other_classifier if checkpoint == 'cls_other' else checkpoints[checkpoint]
    config = dict(cls=CLS, det=DET)[task]
    argv = [osp.join(ROOT, config), ckpt, '--out', str(out), '--repeats', '1', *flags]
    with pytest.raises(SystemExit) as exit_:
        run_tool(tool('deploy.export').main, argv)
    err = capsys.readouterr().err.strip()
    print('MEASURED', wrong, err)
    if message is None:
        assert exit_.value.code == 0 and json.load(open(str(out) + '.json'))['checks'], err
        return
    assert exit_.value.code == 2
    assert len(err.splitlines()) == 1, err
    assert f'error: {out}: ' in err and re.search(message, err), err
    assert not osp.exists(str(out) + '.json') and osp.exists(out)


def test_the_check_tolerance_and_non_finite_outputs():
    """The tolerance the tool states is the library's; a NaN or inf where PyTorch is finite is an
    infinite difference (a maximum that skipped NaN would pass it), NaN where both are NaN none."""
    from addp_mm.apis.export import PARITY_RTOL, compare, output_difference
    assert tool('deploy.export').RTOL == PARITY_RTOL == 1e-4
    ref = torch.tensor([1., -4., 2.])
    off = torch.tensor([0., 1e-3, 0.])
    assert output_difference(ref, ref + off) == pytest.approx((1e-3, 2.5e-4), rel=1e-3)
    assert output_difference(ref, torch.tensor([1., float('nan'), 2.]))[1] == float('inf')
    assert output_difference(ref, torch.tensor([1., -4., float('inf')]))[1] == float('inf')
    both = torch.tensor([float('nan'), float('inf'), 2.])
    assert output_difference(both, both.clone()) == (0., 0.)
    flipped = torch.tensor([float('nan'), -float('inf'), 2.])
    assert output_difference(both, flipped)[1] == float('inf')
    eager = ([ref], 1.)
    close = compare(eager, lambda x: [ref + 1e-5], ref, 1)
    assert close['max_rel'] == pytest.approx(2.5e-6, rel=1e-2)
    from addp_mm.apis.export import ExportCheckError
    with pytest.raises(ExportCheckError, match=r'f.onnx: at input \(3,\) .*output 0 differs .* '
                                               r'by 2\.5e-04 .*tolerance 0\.0001'):
        compare(eager, lambda x: [ref + torch.tensor([0., 1e-3, 0.])], ref, 1, file='f.onnx')
    loose = compare(eager, lambda x: [ref + 1e-3], ref, 1, rtol=1e-3)
    assert loose['max_rel'] == pytest.approx(2.5e-4, rel=1e-3)


def test_the_check_reports_and_refuses_each_kind_of_wrong_file():
    """``compare`` on stand-in runners: the report it returns, a difference exactly at the tolerance passing, an empty output, the
    runner called with the input every time (its latency measured on it too), and each refusal's
    one line: a runner that fails (its reason on one line), a missing output, another shape."""
    from addp_mm.apis.export import ExportCheckError, compare, output_difference
    assert output_difference(torch.zeros(0), torch.zeros(0)) == (0., 0.)
    assert output_difference(torch.zeros(2), torch.tensor([0., 1e-13]))[1] == pytest.approx(0.1)
    for special in (float('nan'), float('inf')):  # the scale: the largest finite |value|
        assert output_difference(torch.tensor([special, 0.5]), torch.tensor([special, 0.75])
                                 ) == (0.25, 0.5)
    x = torch.tensor([1., 2.])
    ref = [x * 2, x.sum(0, keepdim=True)]
    seen = []

    def run(inputs):
        seen.append(inputs)
        return [inputs * 2, inputs.sum(0, keepdim=True) + 0.3]
    report = compare((ref, 4.5), run, x, repeats=3, rtol=0.1)
    assert len(seen) == 1 + 1 + 3 and all(s is x for s in seen)  # the check, warm-up, 3 timed
    assert report['shape'] == [2] and report['torch_ms'] == 4.5 and report['export_ms'] >= 0
    assert report['max_abs'] == pytest.approx(0.3) and report['max_rel'] == pytest.approx(0.1)
    assert set(report) == {'shape', 'max_abs', 'max_rel', 'torch_ms', 'export_ms'}
    at = compare(([torch.tensor([4.])], 1.), lambda i: [torch.tensor([4.5])], x, 1, rtol=0.125)
    assert at['max_rel'] == 0.125  # exactly at the tolerance: passes

    def fails(inputs):
        raise RuntimeError('Got invalid dimensions for input:\n  index: 0 Got: 3 Expected: 2')
    with pytest.raises(ExportCheckError, match=r'^m\.onnx: at input \(2,\) the exported file does '
                                               r'not run \(Got invalid dimensions for input: index: '
                                               r'0 Got: 3 Expected: 2\): it does not compute what '
                                               r'the model computes$'):
        compare((ref, 1.), fails, x, 1, file='m.onnx')

    def fails_at_length(inputs):
        raise RuntimeError('y ' * 400)
    with pytest.raises(ExportCheckError) as e:  # the reason: its first 300 characters
        compare((ref, 1.), fails_at_length, x, 1)
    assert '(' + ('y ' * 150)[:300] + ')' in str(e.value)
    with pytest.raises(ExportCheckError, match=r'^the exported file: at input \(2,\) the exported '
                                               r'file gives 1 outputs, PyTorch 2 \(a, b\)$'):
        compare((ref, 1.), lambda i: ref[:1], x, 1, names=['a', 'b'])
    with pytest.raises(ExportCheckError, match=r"the exported file's output 1 has shape \(2,\), "
                                               r"PyTorch's \(1,\)$"):
        compare((ref, 1.), lambda i: [ref[0], ref[0]], x, 1)
    with pytest.raises(ExportCheckError, match=r"output 0 differs from PyTorch's by 5\.0e-01 of its "
                                               r'largest \|value\| \(max abs diff 2\.0e\+00\), over '
                                               r'the tolerance 0\.1 \(--rtol\): it does not '
                                               r'compute what the model computes$'):
        compare((ref, 1.), lambda i: [ref[0] + torch.tensor([0., 2.]), ref[1]], x, 1, rtol=0.1)
