"""Export a fine-tuned model out of PyTorch (ONNX for ONNX Runtime, or a ``torch.export``
program) and check the written file against PyTorch right away.

What is exported, by the config's toolbox (its ``default_scope``):

* mmpretrain classifier: ``logits`` ``(B, num_classes)`` (before softmax);
* mmseg segmenter: ``seg_logits`` ``(B, num_classes, H, W)`` at the input's size (the decode
  head's logits resized as mmseg's ``predict`` does);
* mmdet detector: the backbone + neck, ``feat0`` ... (the pyramid levels that feed the RPN and
  RoI heads). Mask R-CNN's RoI stages (NMS, RoIAlign from mmcv's compiled ops) are not exported.

The input is the image batch as the model's data preprocessor hands it on: float32
``(B, 3, H, W)``, RGB, normalised with the config's mean and std (written next to the file in
``FILE.json``), H and W multiples of the patch size.

With ``dynamic=True`` the batch, height and width are free (heights and widths multiples of the
patch size; ViTDet window attention pads its grid in the graph); the check runs a second batch and
size to prove it. The segmenter exports at one size (see :func:`export_model`).
"""
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
    """What was written and how it compares with PyTorch (one line per checked input size)."""
    file: str
    format: str
    task: str
    config: str
    input_shape: List[int]
    dynamic: bool
    size_multiple: int
    opset: Optional[int]
    mean: List[float]
    std: List[float]
    output_names: List[str]
    checks: List[Dict] = field(default_factory=list)
    export_s: float = 0.

    def lines(self) -> List[str]:
        out = [f'{self.format} of the {self.task} written to {self.file} ({self.export_s:.1f} s)']
        for c in self.checks:
            out.append(f"  input {tuple(c['shape'])}: max abs diff {c['max_abs']:.2e}, max rel diff "
                       f"{c['max_rel']:.2e} (of the largest |output|); latency PyTorch "
                       f"{c['torch_ms']:.1f} ms, {self.format} {c['export_ms']:.1f} ms "
                       f"({c['torch_ms'] / c['export_ms']:.2f}x)")
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
    return [float(v) for v in mean.flatten()], [float(v) for v in std.flatten()]


def export_model(config: str, checkpoint: Optional[str], out: str, fmt: str = 'onnx',
                 shape: Optional[Sequence[int]] = None, dynamic: bool = False,
                 opset: int = DEFAULT_OPSET, batch: int = 1, check: bool = True,
                 repeats: int = 5, cfg_options: Optional[dict] = None) -> ExportReport:
    """Export ``config`` + ``checkpoint`` to ``out`` and (``check``) compare it with PyTorch on
    the same random input: at ``shape``, and with ``dynamic`` also at a second size and batch.

    Args:
        shape: ``(H, W)``; default: the size the backbone is made for (``img_size``).
    """
    if fmt not in FORMATS:
        raise UsageError(f'--format {fmt!r}: choose one of {FORMATS}')
    model, cfg = build_model(config, checkpoint, cfg_options)
    scope = cfg.default_scope
    wrapper = WRAPPERS[scope](model).eval()
    # heights / widths in patches (ViTDet's window attention pads its grid in the graph)
    multiple = model.backbone.patch_size
    h, w = shape if shape else model.backbone.img_size
    if h % multiple or w % multiple:
        raise UsageError(f'--shape {h} {w}: height and width must be multiples of the patch size '
                         f'{multiple} (the toolboxes pad their inputs to such sizes)')
    if dynamic and scope == 'mmseg':
        raise UsageError(
            '--dynamic: the segmenter exports at one size only (mmseg\'s UPerHead pools to fixed '
            'grids, which the exporter fixes to the traced size, and its outputs are then wrong at '
            'other sizes): export without --dynamic at the crop size you infer with '
            f'(--shape {" ".join(str(s) for s in cfg.model.get("test_cfg", {}).get("crop_size", (h, w)))})')
    mean, std = _normalisation(model)
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
        input_shape=list(example.shape), dynamic=dynamic, size_multiple=multiple,
        opset=opset if fmt == 'onnx' else None, mean=mean, std=std,
        output_names=list(wrapper.output_names), export_s=time.perf_counter() - start)
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
        report.checks = [compare(ref, run, x, repeats) for ref, x in zip(eager, inputs)]
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
            output_names=list(getattr(wrapper, 'output_names', ['output'])),
            dynamic_shapes=_dims(dynamic, multiple), verbose=False)
    program.save(out)


def _export_program(wrapper: nn.Module, example: torch.Tensor, out: str, dynamic: bool,
                    multiple: int) -> None:
    # the batch stays as traced: torch.export's program asserts the traced batch's size class
    program = torch.export.export(wrapper, (example, ), dynamic_shapes=_dims(dynamic, multiple, False),
                                  strict=False)
    torch.export.save(program, out)


def onnx_runner(file: str):
    """``run(x) -> [outputs]`` of an ONNX file in ONNX Runtime on the CPU (PyTorch's threads)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # its idle threads must not spin on the cores PyTorch is timed on next
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(file, options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return lambda x: [torch.from_numpy(o) for o in session.run(None, {name: x.numpy()})]


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


def compare(eager: Tuple[List, float], run, x: torch.Tensor, repeats: int = 5) -> Dict:
    """PyTorch's outputs and time (:func:`eager_outputs`) vs the exported file's on ``x``: the max
    abs difference, the max relative to the largest |output|, and both latencies (median ms)."""
    ref, torch_ms = eager
    got = run(x)
    if len(got) != len(ref):
        raise RuntimeError(f'the exported file gives {len(got)} outputs, PyTorch {len(ref)}')
    max_abs = max_rel = 0.
    for r, g in zip(ref, got):
        if tuple(r.shape) != tuple(g.shape):
            raise RuntimeError(f'exported output of shape {tuple(g.shape)}, PyTorch '
                               f'{tuple(r.shape)} for input {tuple(x.shape)}')
        diff = float((r - g).abs().max())
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(float(r.abs().max()), 1e-12))
    export_ms = _median_ms(lambda: run(x), repeats)
    return dict(shape=list(x.shape), max_abs=max_abs, max_rel=max_rel, torch_ms=torch_ms,
                export_ms=export_ms)
