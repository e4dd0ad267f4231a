"""The checks that turn a user's mistake into one clear error before anything slow starts: a
missing or malformed dataset folder or annotation file, a missing checkpoint, a mixed-precision
setting this machine cannot run, a neck or head whose width does not match the backbone's."""
import logging
import os
import os.path as osp
from typing import List

import torch
from mmengine.config import Config

from addp_mm.errors import UsageError

def _dataset_paths(dataset: dict, where: str):
    """``(key, path, kind)`` for the folders (``kind`` True) and files (``kind``: the dataset's
    type) a dataset config reads (wrappers followed), relative paths joined with ``data_root`` as
    mmengine's ``BaseDataset`` does."""
    if not isinstance(dataset, dict):
        return
    for inner in ('dataset', 'datasets'):
        sub = dataset.get(inner)
        for i, d in enumerate(sub if isinstance(sub, (list, tuple)) else [sub]):
            yield from _dataset_paths(d, f'{where}.{inner}' + (f'[{i}]' if isinstance(sub, (list, tuple)) else ''))
    root = dataset.get('data_root') or ''
    if root:
        yield f'{where}.data_root', root, True
    ann = dataset.get('ann_file')
    if isinstance(ann, str) and ann:
        # a test set read without annotations (COCO test-dev's image info) needs none
        pipeline = dataset.get('pipeline') or []
        image_info = bool(dataset.get('test_mode')) and not any(
            isinstance(t, dict) and t.get('type') == 'LoadAnnotations' for t in pipeline)
        yield (f'{where}.ann_file', ann if osp.isabs(ann) else osp.join(root, ann),
               (dataset.get('type'), image_info))
    prefix = dataset.get('data_prefix')
    if not prefix and dataset.get('split'):  # mmpretrain's ImageNet reads data_root/<split>/
        yield f'{where}.split', osp.join(root, dataset['split']), True
    prefixes = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
    for key, value in prefixes:
        if isinstance(value, str) and value:
            yield (f'{where}.data_prefix' + (f'.{key}' if key else ''),
                   value if osp.isabs(value) else osp.join(root, value), True)


def check_data(cfg: Config, loaders=('train_dataloader', 'val_dataloader')) -> None:
    """``FileNotFoundError`` naming the config key, the path and the fix when a dataset's folder or
    annotation file is missing, a :class:`UsageError` when an annotation file is empty or
    malformed (:func:`check_annotation_file`), before the runner spends time building the model."""
    for loader in loaders:
        dataloader = cfg.get(loader)
        if not isinstance(dataloader, dict):
            continue
        for key, path, kind in _dataset_paths(dataloader.get('dataset'), f'{loader}.dataset'):
            is_dir = kind is True
            if (osp.isdir if is_dir else osp.isfile)(path):
                if key.endswith('.ann_file'):
                    check_annotation_file(path, key, *kind)
                continue
            demo = osp.normpath(path).startswith(osp.join('data', 'demo'))
            fix = ('make the demo data first: python tools/make_demo_data.py data/demo' if demo else
                   'see docs/data_preparation.md')
            raise FileNotFoundError(
                f"{key}: {'folder' if is_dir else 'file'} '{path}' not found (looked in "
                f"{os.getcwd()}); {fix}, or point the config at your copy with "
                f"--cfg-options {key.rsplit('.', 1)[0]}.data_root=PATH")


# COCO-style annotation files larger than this are only checked for a JSON object at their start
# (the dataset parses them anyway; the check must not double a big file's loading time)
ANN_PARSE_LIMIT = 64 << 20
COCO_KEYS = ('images', 'annotations', 'categories')


def check_annotation_file(path: str, key: str, dataset_type=None, image_info: bool = False) -> None:
    """A clear error naming the file and the config key for an empty or malformed ``.json``
    annotation file (and, for a COCO dataset, one without ``images`` / ``annotations`` /
    ``categories``; ``image_info``: a test set without annotations, as COCO test-dev's image
    info, needs no ``annotations``), instead of a traceback from deep inside the dataset."""
    if not path.endswith('.json'):
        return
    fix = ('regenerate it (demo data: python tools/make_demo_data.py data/demo) or point '
           f'--cfg-options {key}=... at a COCO-format file')
    size = osp.getsize(path)
    if size == 0:
        raise UsageError(f"{key}: annotation file '{path}' is empty (0 bytes); {fix}")
    import json
    with open(path, 'rb') as f:
        if size > ANN_PARSE_LIMIT:
            start = f.read(4096).lstrip()
            if not start.startswith(b'{'):
                raise UsageError(f"{key}: annotation file '{path}' is not a JSON object; {fix}")
            return
        try:
            content = json.loads(f.read())
        except (ValueError, UnicodeDecodeError) as e:
            raise UsageError(f"{key}: annotation file '{path}' is not valid JSON ({e}); {fix}") from None
    if not isinstance(content, dict):
        raise UsageError(f"{key}: annotation file '{path}' holds a JSON {type(content).__name__}, "
                         f'not an object; {fix}')
    if isinstance(dataset_type, str) and 'coco' in dataset_type.lower():
        missing = [k for k in COCO_KEYS if k not in content
                   and not (image_info and k == 'annotations')]
        if missing:
            raise UsageError(f"{key}: annotation file '{path}' has no {missing} (a COCO file has "
                             f"{list(COCO_KEYS)}; found {sorted(content)[:8]}); {fix}")


def _pretrained_checkpoints(node, where='model'):
    """``(key, path)`` of every ``init_cfg=dict(type='Pretrained', checkpoint=...)`` in a model."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        for cfg in init if isinstance(init, (list, tuple)) else [init]:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' and cfg.get('checkpoint'):
                yield f'{where}.init_cfg.checkpoint', cfg['checkpoint']
        for key, value in node.items():
            if key != 'init_cfg':
                yield from _pretrained_checkpoints(value, f'{where}.{key}')


def check_checkpoints(cfg: Config) -> List[tuple]:
    """``(config key, path)`` of the checkpoint files a run would load (``load_from`` and every
    ``Pretrained`` init_cfg) that do not exist."""
    paths = list(_pretrained_checkpoints(cfg.get('model')))
    if cfg.get('load_from') and not (cfg.get('resume') and cfg.load_from == 'auto'):
        paths.append(('load_from', cfg.load_from))
    return [(key, path) for key, path in paths if isinstance(path, str) and not osp.isfile(path)]


def native_cpu_autocast(dtype: str = 'bf16') -> bool:
    """Whether this CPU computes ``dtype`` ('bf16' or 'fp16') natively (AVX512-BF16 / AMX, see
    :func:`addp_mm.models.utils.precision.native_bf16`); elsewhere torch emulates it and CPU
    autocast is many times slower than fp32."""
    if dtype == 'bf16':
        from addp_mm.models.utils.precision import native_bf16
        return native_bf16('cpu')
    return bool(getattr(torch.cpu, '_is_amx_fp16_supported', lambda: False)())


def check_amp(cfg: Config) -> None:
    """mmengine's ``AmpOptimWrapper`` runs on GPUs (and NPU/MLU/MUSA) only. On a CPU-only machine
    that computes bf16 natively, run it as ``CPUAutocastOptimWrapper`` (bf16 autocast) and say
    so; elsewhere, and for mmdet detectors (mmcv's CPU box / mask ops take float32 only), stop
    with one line and the fix (bf16 would be emulated: slower than fp32)."""
    wrapper = cfg.get('optim_wrapper') or {}
    if wrapper.get('type') in ('OptimWrapper', 'NonFiniteGuardOptimWrapper'):
        for key in ('loss_scale', 'dtype'):  # left over from an AMP config: OptimWrapper rejects them
            wrapper.pop(key, None)
        return
    if torch.cuda.is_available():
        return
    if wrapper.get('type') == 'NonFiniteGuardAmpOptimWrapper':  # the pretraining configs'
        raise UsageError(
            "mixed precision (optim_wrapper.type='NonFiniteGuardAmpOptimWrapper') needs a GPU: on "
            'this machine train in full precision with --cfg-options '
            'optim_wrapper.type=NonFiniteGuardOptimWrapper (and without --amp)')
    if wrapper.get('type') != 'AmpOptimWrapper':
        return
    if cfg.get('default_scope') == 'mmdet':
        raise UsageError(
            "mixed precision (optim_wrapper.type='AmpOptimWrapper', from the config or --amp) of "
            "an mmdet detector needs a GPU: on a CPU, mmcv's box and mask ops (nms, RoIAlign) take "
            'float32 only. Train in full precision with --cfg-options '
            'optim_wrapper.type=OptimWrapper (and without --amp)')
    if native_cpu_autocast('bf16'):
        wrapper.type = 'CPUAutocastOptimWrapper'
        wrapper.pop('loss_scale', None)
        wrapper['dtype'] = 'bfloat16'
        from mmengine.logging import print_log
        print_log('mixed precision: no GPU here; this CPU computes bf16 natively, so the AMP '
                  'config runs with CPU bf16 autocast (CPUAutocastOptimWrapper)',
                  logger='current', level=logging.WARNING)
        return
    raise UsageError(
        "mixed precision (optim_wrapper.type='AmpOptimWrapper', from the config or --amp) needs a "
        'GPU or a CPU with native bf16, and this machine has neither: train in full precision '
        'with --cfg-options optim_wrapper.type=OptimWrapper (and without --amp)')


def check_model_widths(cfg: Config) -> None:
    """A :class:`UsageError` naming both keys when the neck (or head) of a model with an
    ``ADDPViT`` backbone expects another width than the backbone's (e.g. ``arch='tiny'`` with
    ``SimpleFPN(in_channels=64)``), before anything is built (it would fail deep in a
    convolution)."""
    model = cfg.get('model')
    backbone = model.get('backbone') if isinstance(model, dict) else None
    if not isinstance(backbone, dict) or backbone.get('type') != 'ADDPViT':
        return
    from addp_mm.models.backbones.addp_vit import ADDPViT, width_mismatch
    arch = backbone.get('arch', 'base')
    if isinstance(arch, str):
        width = ADDPViT.arch_zoo.get(arch.lower(), {}).get('embed_dims')
    else:
        width = arch.get('embed_dims') if isinstance(arch, dict) else None
    if width is None:
        return  # an unknown arch is ADDPViT's own error
    expected = []  # (key, value) that must equal the width
    neck = model.get('neck')
    if isinstance(neck, dict) and neck.get('type') == 'SimpleFPN':
        expected.append(('model.neck.in_channels', neck.get('in_channels')))
    elif isinstance(neck, dict) and neck.get('type') in ('Feature2Pyramid',
                                                          'mmseg.Feature2Pyramid'):
        expected.append(('model.neck.embed_dim', neck.get('embed_dim')))
        for head in ('decode_head', 'auxiliary_head'):  # the pyramid keeps the width
            channels = model[head].get('in_channels') if isinstance(model.get(head), dict) else None
            if isinstance(channels, (list, tuple)):
                expected += [(f'model.{head}.in_channels[{i}]', c) for i, c in enumerate(channels)]
            else:
                expected.append((f'model.{head}.in_channels', channels))
    elif neck is None and isinstance(model.get('head'), dict) and backbone.get('out_type') in (
            'cls_token', 'avg_featmap'):
        expected.append(('model.head.in_channels', model['head'].get('in_channels')))
    for key, value in expected:
        if isinstance(value, int) and value != width:
            raise width_mismatch(key, value, width, f'model.backbone.arch={arch!r}')
