"""Export a fine-tuned model out of PyTorch (ONNX for ONNX Runtime, or a ``torch.export``
program) and check the written file against PyTorch right away.

What is exported, by the config's toolbox (its ``default_scope``):

* mmpretrain classifier: ``logits`` ``(B, num_classes)`` (before softmax);
* mmseg segmenter: ``seg_logits`` ``(B, num_classes, H, W)`` at the input's size (the decode
  head's logits resized as mmseg's ``predict`` does);
* mmdet detector: the backbone + neck, ``feat0`` ... (the pyramid levels that feed the RPN and
  RoI heads). Mask R-CNN's RoI stages (NMS, RoIAlign from mmcv's compiled ops) are not exported.

The input is the image batch as the model's data preprocessor hands it on: float32
``(B, 3, H, W)``, RGB, normalised with the config's mean and std, H and W multiples of the patch
size. ``FILE.json`` beside the file says all that a program needs to feed it without OpenMMLab
(:func:`deploy_spec`: the test pipeline's resizing, cropping and padding, mean / std, channel
order, the outputs, the class names); ``tools/deploy/run_onnx.py`` is such a program.
:func:`detect_with_onnx_features` runs the detector's RPN and RoI heads in PyTorch on the
features ONNX Runtime computes.

With ``dynamic=True`` the batch, height and width are free (heights and widths multiples of the
patch size; ViTDet window attention pads its grid in the graph); the check runs a second batch and
size to prove it. The segmenter exports at one size (see :func:`export_model`).

The check fails the export (:class:`ExportCheckError`, one line naming the file, the input size and
the difference) where the file does not compute what the model computes: an output more than
``rtol`` (:data:`PARITY_RTOL` unless given) of its largest |value| away from PyTorch's, a
non-finite value where PyTorch's is finite, another number or shape of outputs, or an input size it
does not run at.
"""
import copy
import json
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass, field
from importlib import import_module
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from addp_mm.errors import UsageError

FORMATS = ('onnx', 'torch_export')
TASKS = {'mmpretrain': 'classifier', 'mmseg': 'segmenter', 'mmdet': 'detector backbone + neck'}
DEFAULT_OPSET = 18
SCHEMA = 'addp-mm-deploy/1'  # the layout of FILE.json (docs/user_guides/deployment.md)
# the check's tolerance: each output of the file within this share of its largest |value| of
# PyTorch's, at every checked input. Measured on the demo models: 2e-7 to 1.3e-6 (float32 sums in
# another order); the patch embedding's weights off by 1 % 1.5e-2, another model's weights 0.76, a
# NaN weight inf (tests/test_export.py)
PARITY_RTOL = 1e-4


class ExportCheckError(UsageError):
    """The written file does not compute what the model computes at a checked input."""


class ClassifierExport(nn.Module):
    """mmpretrain ``ImageClassifier``: normalised images -> logits."""
    output_names = ('logits', )

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs, mode='tensor')


class SegmenterExport(nn.Module):
    """mmseg ``EncoderDecoder``: normalised images -> class logits at the input's size."""
    output_names = ('seg_logits', )

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs, mode='tensor')
        return F.interpolate(logits, size=inputs.shape[2:], mode='bilinear',
                             align_corners=self.model.decode_head.align_corners)


class DetectorFeaturesExport(nn.Module):
    """mmdet detector: normalised images -> the neck's pyramid (``extract_feat``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.output_names = tuple(f'feat{i}' for i in range(model.neck.num_outs))

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.model.extract_feat(inputs))


WRAPPERS = {'mmpretrain': ClassifierExport, 'mmseg': SegmenterExport,
            'mmdet': DetectorFeaturesExport}


@dataclass
class ExportReport:
    """What was written (``FILE.json``: how to feed it, see :func:`deploy_spec`) and how it
    compares with PyTorch (one line per checked input size)."""
    file: str
    format: str
    task: str
    config: str
    opset: Optional[int]
    input: Dict
    preprocess: List[Dict]
    inference: Dict
    outputs: List[Dict]
    classes: Optional[List[str]]
    checks: List[Dict] = field(default_factory=list)
    export_s: float = 0.
    schema: str = SCHEMA

    @property
    def output_names(self) -> List[str]:
        return [o['name'] for o in self.outputs]

    def lines(self) -> List[str]:
        out = [f'{self.format} of the {self.task} written to {self.file} ({self.export_s:.1f} s); '
               f'how to feed it: {self.file}.json']
        for c in self.checks:
            out.append(f"  input {tuple(c['shape'])}: max abs diff {c['max_abs']:.2e}, max rel diff "
                       f"{c['max_rel']:.2e} (of the largest |output|); latency PyTorch "
                       f"{c['torch_ms']:.1f} ms, {self.format} {c['export_ms']:.1f} ms "
                       f"({c['torch_ms'] / c['export_ms']:.2f}x)")
        unsupported = [s['transform'] for s in self.preprocess if s['op'] == 'unsupported']
        if unsupported:
            out.append(f'  FILE.json cannot describe the test pipeline\'s '
                       f'{", ".join(unsupported)}: a program that feeds the file must do that '
                       'step itself')
        return out


def build_model(config: str, checkpoint: Optional[str], cfg_options: Optional[dict] = None):
    """The config's model with the checkpoint's weights (all of them: a model checkpoint written
    by training, e.g. ``work_dirs/<config>/epoch_N.pth``; ``None``: its random initialisation),
    in eval mode, and the config."""
    from mmengine.registry import MODELS, DefaultScope

    from addp_mm.checkpoint import STRICT, load_weights
    from addp_mm.engine.config import load_config
    cfg = load_config(config, cfg_options)
    scope = cfg.get('default_scope')
    if scope not in WRAPPERS:
        raise UsageError(f'{config}: default_scope {scope!r} is not one of {sorted(WRAPPERS)}; '
                         'export covers the mmpretrain classifiers, mmseg segmenters and mmdet '
                         'detectors (pretraining / generation configs are not exported)')
    import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:  # what mmengine's Runner does with it
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    _no_download(model_cfg)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        load_weights(model, checkpoint, policy=STRICT, key='CHECKPOINT')
    else:  # random weights (benchmarks, tests)
        model.init_weights()
    return model.eval(), cfg


def _no_download(node) -> None:
    """The weights come from CHECKPOINT: no backbone ``init_cfg`` / ``pretrained`` is read."""
    if isinstance(node, dict):
        for key in ('init_cfg', 'pretrained'):
            if key in node:
                node[key] = None
        for value in node.values():
            _no_download(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _no_download(value)


def _normalisation(model: nn.Module) -> Tuple[List[float], List[float]]:
    pre = model.data_preprocessor
    mean = getattr(pre, 'mean', None)
    std = getattr(pre, 'std', None)
    if mean is None:
        return [0., 0., 0.], [1., 1., 1.]
    # the shortest decimals of the float32 values (the config's numbers)
    return ([float(str(v)) for v in mean.flatten().numpy()],
            [float(str(v)) for v in std.flatten().numpy()])


# ------------------------------------------------------------------ FILE.json: how to feed the file
def inference_pipeline_cfg(cfg) -> List[dict]:
    """The config's test pipeline (``test_dataloader``, else ``val_dataloader``) without its
    annotation loading: what the toolboxes' inferencers run on an image."""
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    dataset = loader.get('dataset', {})
    while 'pipeline' not in dataset and 'dataset' in dataset:  # dataset wrappers
        dataset = dataset['dataset']
    if 'pipeline' not in dataset:
        raise UsageError(f'{cfg.filename}: no test_dataloader.dataset.pipeline; FILE.json '
                         'describes the test pipeline: add one (the one tools/test.py runs)')
    return [copy.deepcopy(t) for t in dataset['pipeline']
            if t['type'].split('.')[-1] != 'LoadAnnotations']


def build_inference_pipeline(cfg):
    """:func:`inference_pipeline_cfg` built in the config's toolbox: ``dict(img_path=FILE)`` -> the
    packed ``inputs`` / ``data_samples`` of one image (``mmengine.dataset.pseudo_collate`` of a
    list of them is a batch for the model's data preprocessor)."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    import_module(f'{cfg.default_scope}.utils').register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return Compose(inference_pipeline_cfg(cfg))


def _slide_crop(model: nn.Module) -> Optional[Tuple[int, int]]:
    test_cfg = model.test_cfg or {}
    return tuple(test_cfg['crop_size']) if test_cfg.get('mode') == 'slide' else None


def _channel_order(preprocessor: nn.Module) -> str:
    """The order of the channels the model sees: the pipeline decodes BGR (OpenCV's order), the
    data preprocessor flips them when its ``bgr_to_rgb`` (mmpretrain: ``to_rgb``) is set."""
    # mmengine's (mmdet's) name, mmseg's, mmpretrain's
    for attr in ('_channel_conversion', 'channel_conversion', 'to_rgb'):
        if hasattr(preprocessor, attr):
            return 'RGB' if getattr(preprocessor, attr) else 'BGR'
    return 'BGR'


def _pixel_value(value, order: str) -> List[int]:
    """A pipeline's pad value (a number or a BGR triple) as the 8-bit image gets it (OpenCV rounds
    to the nearest integer), in the model's channel ``order``."""
    values = [value] * 3 if isinstance(value, (int, float)) else list(value)
    values = [int(np.clip(np.rint(v), 0, 255)) for v in values]
    return values[::-1] if order == 'RGB' else values


def _pipeline_steps(cfg, order: str) -> List[Dict]:
    """The test pipeline's image steps in FILE.json's terms (sizes as ``[height, width]``); what
    the schema has no step for is an ``unsupported`` step naming the transform."""
    steps = []
    for t in build_inference_pipeline(cfg).transforms:
        name = type(t).__name__
        if name.startswith('Pack') or (name == 'LoadImageFromFile' and t.color_type == 'color'):
            continue  # decoding to 8-bit colour is the schema's starting point
        resampling = dict(interpolation=getattr(t, 'interpolation', None),
                          backend=getattr(t, 'backend', None))
        if name == 'Resize' and t.scale is not None and t.keep_ratio:
            steps.append(dict(op='resize_keep_ratio', max_long_edge=max(t.scale),
                              max_short_edge=min(t.scale), **resampling))
        elif name == 'Resize' and t.scale is not None:
            steps.append(dict(op='resize', size=[t.scale[1], t.scale[0]], **resampling))
        elif name == 'ResizeEdge':
            steps.append(dict(op='resize_edge', edge=t.edge, size=t.scale, **resampling))
        elif name == 'CenterCrop' and not t.auto_pad:
            steps.append(dict(op='center_crop', size=[t.crop_size[1], t.crop_size[0]]))
        elif name == 'Pad' and t.padding_mode == 'constant' and not t.pad_to_square:
            where = (dict(size=[t.size[1], t.size[0]]) if t.size is not None
                     else dict(size_divisor=t.size_divisor))
            value = _pixel_value(t.pad_val.get('img', 0), order)
            steps.append(dict(op='pad', **where, value=value))
        else:
            steps.append(dict(op='unsupported', transform=repr(t)))
    return steps


def _preprocessor_steps(preprocessor: nn.Module) -> List[Dict]:
    """What the data preprocessor does after the pipeline: normalise, then pad (with values of the
    normalised image) at the bottom / right."""
    steps = [dict(op='normalize')]
    # mmengine's ImgDataPreprocessor (mmpretrain's, mmdet's) pads to multiples of a divisor
    if hasattr(preprocessor, 'pad_size_divisor'):
        size, divisor, value = None, preprocessor.pad_size_divisor, preprocessor.pad_value
    else:  # mmseg's SegDataPreProcessor pads test images by its test_cfg only
        test_cfg = getattr(preprocessor, 'test_cfg', None) or {}
        size, divisor = test_cfg.get('size'), test_cfg.get('size_divisor')
        value = getattr(preprocessor, 'pad_val', 0)
    if size is not None:
        steps.append(dict(op='pad', size=list(size), value=float(value)))
    elif divisor is not None and divisor > 1:
        steps.append(dict(op='pad', size_divisor=divisor, value=float(value)))
    return steps


def _dataset_classes(cfg) -> Optional[List[str]]:
    """The class names: the test dataset's ``metainfo``, else its dataset class's ``METAINFO``."""
    from mmengine.registry import DATASETS
    dataset = (cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}).get('dataset', {})
    while 'metainfo' not in dataset and 'dataset' in dataset:
        dataset = dataset['dataset']
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None and 'type' in dataset:
        with DATASETS.switch_scope_and_registry(cfg.default_scope) as registry:
            dataset_cls = registry.get(dataset['type'])
        classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    return list(classes) if classes is not None else None


def _outputs(model: nn.Module, scope: str) -> List[Dict]:
    if scope == 'mmpretrain':
        return [dict(name='logits', shape=['batch', model.head.num_classes],
                     meaning='class scores before softmax; softmax: the probabilities, argmax: '
                             'the class (an index into classes)')]
    if scope == 'mmseg':
        return [dict(name='seg_logits',
                     shape=['batch', model.decode_head.out_channels, 'height', 'width'],
                     meaning='class scores before softmax at each pixel of the input; over an '
                             'image: the inference mode\'s average, bilinearly resized to the '
                             'image as decoded (inference.align_corners), argmax over the '
                             'classes: the class of each pixel (an index into classes)')]
    strides = [s[0] for s in model.rpn_head.prior_generator.strides]
    return [dict(name=f'feat{i}', shape=['batch', model.rpn_head.in_channels, f'height/{s}',
                                         f'width/{s}'], stride=s,
                 meaning=f'the neck\'s pyramid level {i} (stride {s}): the input of the '
                         'detector\'s rpn_head and roi_head, which run in PyTorch '
                         '(addp_mm.apis.export.detect_with_onnx_features)')
            for i, s in enumerate(strides)]


def deploy_spec(model: nn.Module, cfg, input_shape: List[int], dynamic: bool) -> Dict:
    """FILE.json's ``input``, ``preprocess``, ``inference``, ``outputs`` and ``classes``: what a
    program needs to feed the exported file an image and read its outputs, without OpenMMLab.
    The schema (``SCHEMA``) is docs/user_guides/deployment.md's "What FILE.json says"."""
    pre = model.data_preprocessor
    order = _channel_order(pre)
    mean, std = _normalisation(model)
    scope = cfg.default_scope
    shape = ['batch', 3, 'height', 'width'] if dynamic else list(input_shape)
    inference = dict(mode='whole')
    if scope == 'mmseg':
        crop = _slide_crop(model)
        inference = dict(mode='slide', crop_size=list(crop),
                         stride=list(model.test_cfg['stride'])) if crop else inference
        inference['align_corners'] = bool(model.align_corners)
    return dict(
        input=dict(name='inputs', shape=shape, size_multiple=model.backbone.patch_size,
                   dtype='float32', layout='NCHW', channel_order=order, pixel_range=[0, 255],
                   mean=mean, std=std),
        preprocess=_pipeline_steps(cfg, order) + _preprocessor_steps(pre),
        inference=inference, outputs=_outputs(model, scope), classes=_dataset_classes(cfg))


def export_model(config: str, checkpoint: Optional[str], out: str, fmt: str = 'onnx',
                 shape: Optional[Sequence[int]] = None, dynamic: bool = False,
                 opset: int = DEFAULT_OPSET, batch: int = 1, check: bool = True,
                 repeats: int = 5, cfg_options: Optional[dict] = None,
                 rtol: float = PARITY_RTOL) -> ExportReport:
    """Export ``config`` + ``checkpoint`` to ``out`` and (``check``) compare it with PyTorch on
    the same random input: at ``shape``, and with ``dynamic`` also at a second size and batch.
    A file that fails the check (:func:`compare`) raises :class:`ExportCheckError`; it stays at
    ``out`` for inspection, without ``FILE.json``.

    Args:
        shape: ``(H, W)``; default: the size the backbone is made for (``img_size``).
        rtol: the check's tolerance, a share of each output's largest |value|.
    """
    if fmt not in FORMATS:
        raise UsageError(f'--format {fmt!r}: choose one of {FORMATS}')
    model, cfg = build_model(config, checkpoint, cfg_options)
    scope = cfg.default_scope
    wrapper = WRAPPERS[scope](model).eval()
    # heights / widths in patches (ViTDet's window attention pads its grid in the graph)
    multiple = model.backbone.patch_size
    crop = _slide_crop(model) if scope == 'mmseg' else None
    h, w = shape if shape else crop or model.backbone.img_size
    if crop and (h, w) != crop:
        raise UsageError(f'--shape {h} {w}: the segmenter slides {crop[0]} x {crop[1]} crops '
                         f'(model.test_cfg.crop_size): export at --shape {crop[0]} {crop[1]}, or '
                         'change the crop with --cfg-options model.test_cfg.crop_size=...')
    if h % multiple or w % multiple:
        raise UsageError(f'--shape {h} {w}: height and width must be multiples of the patch size '
                         f'{multiple} (the toolboxes pad their inputs to such sizes)')
    if dynamic and scope == 'mmseg':
        raise UsageError(
            '--dynamic: the segmenter exports at one size only (mmseg\'s UPerHead pools to fixed '
            'grids, which the exporter fixes to the traced size, and its outputs are then wrong at '
            'other sizes): export without --dynamic at the crop size you infer with '
            f'(--shape {" ".join(str(s) for s in cfg.model.get("test_cfg", {}).get("crop_size", (h, w)))})')
    # ONNX's dynamic batch is traced with 2 images: torch.export fixes a dimension traced at 1
    gen = torch.Generator().manual_seed(0)  # the same inputs, so the same printed numbers
    example = torch.randn(max(batch, 2) if dynamic and fmt == 'onnx' else batch, 3, h, w,
                          generator=gen)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    start = time.perf_counter()
    if fmt == 'onnx':
        export_onnx(wrapper, example, out, dynamic, multiple, opset)
    else:
        _export_program(wrapper, example, out, dynamic, multiple)
    report = ExportReport(
        file=osp.abspath(out), format=fmt, task=TASKS[scope], config=config,
        opset=opset if fmt == 'onnx' else None, export_s=time.perf_counter() - start,
        **deploy_spec(model, cfg, list(example.shape), dynamic))
    if check:
        shapes = [tuple(example.shape)]
        if dynamic:
            other_batch = 1 if len(example) > 1 else 2
            shapes.append((other_batch if fmt == 'onnx' else len(example), 3, h + multiple,
                           w + 2 * multiple))
        inputs = [torch.randn(*s, generator=gen) for s in shapes]
        # PyTorch first, before the runtime's threads exist on the same cores
        eager = [eager_outputs(wrapper, x, repeats) for x in inputs]
        run = onnx_runner(out) if fmt == 'onnx' else _program_runner(out)
        try:
            report.checks = [compare(ref, run, x, repeats, rtol, out, wrapper_names(wrapper))
                             for ref, x in zip(eager, inputs)]
        except ExportCheckError:
            if osp.exists(out + '.json'):  # an earlier export's: it does not describe this file
                os.remove(out + '.json')
            raise
    with open(out + '.json', 'w') as f:
        json.dump(asdict(report), f, indent=1)
    return report


def _dims(dynamic: bool, multiple: int, batch: bool = True):
    if not dynamic:
        return None
    Dim = torch.export.Dim
    # sizes as multiples of the patch: the patch grid is then the input's size / patch exactly
    dims = {2: multiple * Dim('h_blocks', min=1, max=4096 // multiple),
            3: multiple * Dim('w_blocks', min=1, max=4096 // multiple)}
    if batch:
        dims[0] = Dim('batch', min=1, max=256)
    return (dims, )


def export_onnx(wrapper: nn.Module, example: torch.Tensor, out: str, dynamic: bool = False,
                multiple: int = 16, opset: int = DEFAULT_OPSET) -> None:
    """``torch.onnx.export`` (dynamo) of ``wrapper`` on ``example`` to ``out``; ``dynamic``: free
    batch, and heights / widths in multiples of ``multiple``."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.onnx.export(
            wrapper, (example, ), dynamo=True, opset_version=opset, input_names=['inputs'],
            output_names=wrapper_names(wrapper),
            dynamic_shapes=_dims(dynamic, multiple), verbose=False)
    program.save(out)


def _export_program(wrapper: nn.Module, example: torch.Tensor, out: str, dynamic: bool,
                    multiple: int) -> None:
    # the batch stays as traced: torch.export's program asserts the traced batch's size class
    program = torch.export.export(wrapper, (example, ), dynamic_shapes=_dims(dynamic, multiple, False),
                                  strict=False)
    torch.export.save(program, out)


def onnx_session(file: str):
    """An ONNX Runtime session of ``file`` on the CPU with PyTorch's number of threads."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # its idle threads must not spin on the cores PyTorch is timed on next
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(file, options, providers=['CPUExecutionProvider'])


def onnx_runner(session_or_file):
    """``run(x) -> [outputs]`` of an ONNX Runtime session, or of an ONNX file
    (:func:`onnx_session`): ``x`` a tensor on any device, the outputs tensors on its device."""
    session = onnx_session(session_or_file) if isinstance(session_or_file, str) else session_or_file
    name = session.get_inputs()[0].name
    return lambda x: [torch.from_numpy(o).to(x.device)
                      for o in session.run(None, {name: x.detach().cpu().numpy()})]


def detect_with_onnx_features(detector: nn.Module, session_or_file, data: dict,
                              rescale: bool = True) -> list:
    """The detector's ``predict`` (mmdet's ``TwoStageDetector.predict``) with its backbone + neck
    run by ONNX Runtime: the data preprocessor prepares ``data`` (a batch as the test dataloader
    gives it, e.g. ``pseudo_collate`` of :func:`build_inference_pipeline`'s outputs), the exported
    file computes the pyramid, the detector's own ``rpn_head`` and ``roi_head`` (mmcv's NMS and
    RoIAlign) turn it into boxes, scores, labels (and masks).

    Returns:
        the data samples with ``pred_instances`` (boxes in the pixels of the images as decoded
        with ``rescale``), as ``detector.test_step(data)`` returns them.
    """
    session = onnx_session(session_or_file) if isinstance(session_or_file, str) else session_or_file
    with torch.no_grad():
        data = detector.data_preprocessor(data, False)
        inputs, samples = data['inputs'], data['data_samples']
        traced = session.get_inputs()[0].shape
        if any(isinstance(d, int) and d != n for d, n in zip(traced[2:], inputs.shape[2:])):
            raise UsageError(
                f'the ONNX file takes {traced[2]} x {traced[3]} images, the data preprocessor '
                f'gives {inputs.shape[2]} x {inputs.shape[3]}: export with --dynamic (or at the '
                'size the test pipeline gives)')
        feats = tuple(onnx_runner(session)(inputs))
        if samples[0].get('proposals', None) is None:
            proposals = detector.rpn_head.predict(feats, samples, rescale=False)
        else:
            proposals = [sample.proposals for sample in samples]
        results = detector.roi_head.predict(feats, proposals, samples, rescale=rescale)
    return detector.add_pred_to_datasample(samples, results)


def _program_runner(file: str):
    module = torch.export.load(file).module()

    def run(x):
        with torch.no_grad():
            out = module(x)
        return list(out) if isinstance(out, (tuple, list)) else [out]
    return run


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def eager_outputs(wrapper: nn.Module, x: torch.Tensor, repeats: int = 5) -> Tuple[List, float]:
    """PyTorch's outputs on ``x`` (eager, the model as trained and tested) and its median ms."""
    with torch.no_grad():
        ref = wrapper(x)
        ms = _median_ms(lambda: wrapper(x), repeats)
    return (list(ref) if isinstance(ref, (tuple, list)) else [ref]), ms


def wrapper_names(wrapper: nn.Module) -> List[str]:
    """The names of the exported outputs of ``wrapper`` (``WRAPPERS``'), in order."""
    return list(getattr(wrapper, 'output_names', ['output']))


def output_difference(ref: torch.Tensor, got: torch.Tensor) -> Tuple[float, float]:
    """The max abs difference of ``got`` to ``ref`` and that relative to the largest finite
    |ref|; a non-finite value of ``got`` where ``ref`` holds another value counts as ``inf``."""
    diff = (ref.float() - got.float()).abs()
    same = (ref == got) | (torch.isnan(ref) & torch.isnan(got))  # incl. the same inf
    inf = float('inf')
    diff = torch.where(same, torch.zeros_like(diff), diff.nan_to_num(nan=inf, posinf=inf))
    max_abs = float(diff.max()) if diff.numel() else 0.
    scale = ref.float().abs().nan_to_num(nan=0., posinf=0.).max() if ref.numel() else 0.
    return max_abs, max_abs / max(float(scale), 1e-12)


def compare(eager: Tuple[List, float], run, x: torch.Tensor, repeats: int = 5,
            rtol: float = PARITY_RTOL, file: str = 'the exported file',
            names: Optional[Sequence[str]] = None) -> Dict:
    """PyTorch's outputs and time (:func:`eager_outputs`) vs the exported file's on ``x``: the max
    abs difference, the max relative to each output's largest |value|, and both latencies (median
    ms). Raises :class:`ExportCheckError`, naming ``file``, ``x``'s size and the difference, where
    the file does not run at ``x``'s size, gives another number or shape of outputs, or an output
    further than ``rtol`` from PyTorch's (see :func:`output_difference`)."""
    ref, torch_ms = eager
    names = list(names or [f'output {i}' for i in range(len(ref))])
    where = f'{file}: at input {tuple(x.shape)}'
    try:
        got = run(x)
    except Exception as e:  # the runtime refuses the input: a size the graph fixed, a bad graph
        reason = ' '.join(str(e).split())[:300]
        raise ExportCheckError(f'{where} the exported file does not run ({reason}): it does not '
                               'compute what the model computes') from e
    if len(got) != len(ref):
        raise ExportCheckError(f'{where} the exported file gives {len(got)} outputs, PyTorch '
                               f'{len(ref)} ({", ".join(names)})')
    max_abs = max_rel = 0.
    for name, r, g in zip(names, ref, got):
        if tuple(r.shape) != tuple(g.shape):
            raise ExportCheckError(f'{where} the exported file\'s {name} has shape '
                                   f'{tuple(g.shape)}, PyTorch\'s {tuple(r.shape)}')
        diff, rel = output_difference(r, g)
        if not rel <= rtol:
            raise ExportCheckError(
                f'{where} the exported file\'s {name} differs from PyTorch\'s by {rel:.1e} of '
                f'its largest |value| (max abs diff {diff:.1e}), over the tolerance {rtol:g} '
                '(--rtol): it does not compute what the model computes')
        max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
    export_ms = _median_ms(lambda: run(x), repeats)
    return dict(shape=list(x.shape), max_abs=max_abs, max_rel=max_rel, torch_ms=torch_ms,
                export_ms=export_ms)
