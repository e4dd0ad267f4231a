"""Small, deterministic synthetic datasets in the real on-disk formats of the toolboxes.

The images are crops of the photographs that ship inside scikit-image (no download needed) with
a few large, clearly distinct shapes pasted on them, so that tiny demo models can learn the
tasks in minutes on a CPU:

* :func:`make_coco` - COCO instances (``train2017/``, ``val2017/``,
  ``annotations/instances_{train,val}2017.json``) with polygon masks, for mmdet.
* :func:`make_ade` - ADE20K-style semantic segmentation (``images/{training,validation}/*.jpg``,
  ``annotations/{training,validation}/*.png``), for mmseg's ``ADE20KDataset``
  (``reduce_zero_label=True``); class names in :data:`ADE_DEMO_CLASSES`.
* :func:`make_imagenet` - class folders ``{train,val}/<class>/*.jpg`` plus ``meta/{train,val}.txt``
  and ``classes.txt``, for mmpretrain's ``ImageNet``/``CustomDataset``.
* :func:`make_unlabeled` - a nested folder of ``.jpg``/``.png`` images (>= 256 px on the short
  side) for self-supervised pretraining.
* :func:`make_digits` - scikit-learn's handwritten digits (1,797 real 8x8 scans shipped inside
  the package) upsampled to 32x32 grayscale PNGs in class folders, with a fixed train/val split
  and a 10%-of-labels list, for the toy pipeline that trains every part
  (docs/user_guides/train_every_part.md).
* :func:`make_all` - all of them under one root (``coco/``, ``ade/``, ``imagenet/``,
  ``unlabeled/``, ``digits/``).

Every image is drawn from its own random generator seeded by ``(seed, dataset, split, index)``,
so the same arguments give byte-identical files, and changing a count does not change the other
images. Nothing here imports torch or any OpenMMLab package.
"""
import json
import os
import os.path as osp
import shutil
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# --------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------

#: The shape classes, in label order (COCO category ids are ``index + 1``).
SHAPE_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star')

#: mmdet ``metainfo=dict(classes=COCO_DEMO_CLASSES)`` (category ids 1..4 in the json).
COCO_DEMO_CLASSES: Tuple[str, ...] = SHAPE_CLASSES

#: mmseg ``metainfo=dict(classes=ADE_DEMO_CLASSES)`` for ``ADE20KDataset`` with
#: ``reduce_zero_label=True``. On disk: 0 = ignored 1-px outline around each shape (-> 255),
#: 1 = background (-> 0), 2..5 = the shapes (-> 1..4).
ADE_DEMO_CLASSES: Tuple[str, ...] = ('background',) + SHAPE_CLASSES

#: mmseg palette matching :data:`ADE_DEMO_CLASSES`.
ADE_DEMO_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (120, 120, 120), (220, 50, 50), (50, 190, 70), (50, 90, 225), (240, 210, 40))

#: mmpretrain class names (folder names, ``classes.txt``), label = index.
IMAGENET_DEMO_CLASSES: Tuple[str, ...] = SHAPE_CLASSES

#: Base RGB colour of each shape class (jittered per instance, plus per-pixel noise).
SHAPE_COLORS: Dict[str, Tuple[int, int, int]] = {
    'circle': (220, 50, 50),     # red
    'square': (50, 190, 70),     # green
    'triangle': (50, 90, 225),   # blue
    'star': (240, 210, 40),      # yellow
}

#: skimage.data photographs used as backgrounds, tried in this order; the ones that need a
#: download (pooch) or are missing in the installed scikit-image are skipped.
BACKGROUND_NAMES: Tuple[str, ...] = (
    'astronaut', 'coffee', 'chelsea', 'rocket', 'coins', 'camera', 'moon', 'grass', 'gravel',
    'brick', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'cell', 'clock')

# stream ids that keep the random streams of the datasets/splits apart
_STREAMS = {
    ('coco', 'train'): 1, ('coco', 'val'): 2, ('ade', 'train'): 3, ('ade', 'val'): 4,
    ('imagenet', 'train'): 5, ('imagenet', 'val'): 6, ('unlabeled', 'all'): 7,
}

JPEG_QUALITY = 90

# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------

_BACKGROUNDS: Optional[List[Tuple[str, np.ndarray]]] = None


def _to_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.shape[-1] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img)


def _procedural_backgrounds() -> List[Tuple[str, np.ndarray]]:
    """Fallback when no skimage photograph can be loaded: smooth noise textures."""
    out = []
    for k in range(4):
        rng = np.random.default_rng([12345, k])
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(small).resize((512, 512), Image.BICUBIC))
        noise = rng.normal(0, 12, size=big.shape)
        out.append((f'procedural{k}', np.clip(big + noise, 0, 255).astype(np.uint8)))
    return out


def available_backgrounds() -> List[Tuple[str, np.ndarray]]:
    """``[(name, HxWx3 uint8)]`` of the skimage photographs that load offline (cached)."""
    global _BACKGROUNDS
    if _BACKGROUNDS is None:
        loaded = []
        try:
            import skimage.data as skdata
        except Exception:  # pragma: no cover - skimage is a hard dependency of the demo
            skdata = None
        if skdata is not None:
            for name in BACKGROUND_NAMES:
                fn = getattr(skdata, name, None)
                if fn is None:
                    continue
                try:
                    img = _to_rgb(fn())
                except Exception:  # needs pooch / a download: skip
                    continue
                if min(img.shape[:2]) >= 64:
                    loaded.append((name, img))
        _BACKGROUNDS = loaded or _procedural_backgrounds()
    return _BACKGROUNDS


_PIL_CACHE: Dict[str, Image.Image] = {}


def _pil_background(name: str, src: np.ndarray) -> Image.Image:
    if name not in _PIL_CACHE:
        _PIL_CACHE[name] = Image.fromarray(src)
    return _PIL_CACHE[name]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of a random photograph, resized to ``height x width``, slightly muted so
    that the saturated shapes stand out."""
    bgs = available_backgrounds()
    name, src = bgs[int(rng.integers(len(bgs)))]
    sh, sw = src.shape[:2]
    aspect = width / height
    frac = rng.uniform(0.35, 1.0)
    ch = int(round(min(sh, sw / aspect) * frac))
    cw = int(round(ch * aspect))
    ch, cw = max(8, min(ch, sh)), max(8, min(cw, sw))
    y0 = int(rng.integers(0, sh - ch + 1))
    x0 = int(rng.integers(0, sw - cw + 1))
    img = np.asarray(_pil_background(name, src).resize(
        (width, height), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)), dtype=np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    grey = img.mean(axis=-1, keepdims=True)
    img = 0.6 * img + 0.25 * grey + 0.15 * 128.0   # desaturate and lower the contrast a bit
    return img


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def _unit_polygon(cls: str, rng: np.random.Generator) -> np.ndarray:
    """``(N, 2)`` x/y vertices of a shape around the origin, randomly rotated."""
    if cls == 'circle':
        t = np.arange(32) * (2 * np.pi / 32)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
        rot = 0.0
    elif cls == 'square':
        pts = np.array([[-1., -1.], [1., -1.], [1., 1.], [-1., 1.]])
        rot = rng.uniform(-20, 20)
    elif cls == 'triangle':
        t = -np.pi / 2 + np.arange(3) * (2 * np.pi / 3)   # apex up (image y grows downwards)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
        rot = rng.uniform(-20, 20)
    elif cls == 'star':
        t = -np.pi / 2 + np.arange(10) * (np.pi / 5)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
        rot = rng.uniform(-36, 36)
    else:
        raise ValueError(f'unknown shape {cls!r}')
    a = np.deg2rad(rot)
    rmat = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ rmat.T


def _rasterize(poly: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean mask of a polygon in COCO pixel convention (pixel ``(x, y)`` covers
    ``[x, x+1) x [y, y+1)``), which is what ``pycocotools`` rasterizes."""
    from skimage.draw import polygon as draw_polygon
    mask = np.zeros((height, width), dtype=bool)
    rr, cc = draw_polygon(poly[:, 1] - 0.5, poly[:, 0] - 0.5, shape=(height, width))
    mask[rr, cc] = True
    return mask


def _boxes_overlap(a, b, margin: float) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _place_shapes(rng: np.random.Generator, height: int, width: int, num: int,
                  size_range: Tuple[float, float], classes: Sequence[str] = SHAPE_CLASSES,
                  cls_fixed: Optional[str] = None, margin: float = 3.0,
                  tries: int = 30) -> List[Tuple[str, np.ndarray]]:
    """Up to ``num`` non-overlapping shapes fully inside the image: ``[(cls, poly (N,2))]``.
    The first one always fits; later ones are dropped when no free spot is found."""
    side = min(height, width)
    placed: List[Tuple[str, np.ndarray]] = []
    boxes = []
    for _ in range(num):
        cls = cls_fixed if cls_fixed is not None else classes[int(rng.integers(len(classes)))]
        unit = _unit_polygon(cls, rng)
        ext = (unit.max(0) - unit.min(0)).max()
        for _ in range(tries):
            d = rng.uniform(*size_range) * side
            pts = unit * (d / ext)
            lo, hi = pts.min(0), pts.max(0)
            # keep >= 1 px away from the border
            x = rng.uniform(1 - lo[0], width - 1 - hi[0])
            y = rng.uniform(1 - lo[1], height - 1 - hi[1])
            poly = np.round(pts + np.array([x, y]), 2)
            box = (*poly.min(0), *poly.max(0))
            if all(not _boxes_overlap(box, b, margin) for b in boxes):
                placed.append((cls, poly))
                boxes.append(box)
                break
    return placed


def _paint(img: np.ndarray, mask: np.ndarray, cls: str, rng: np.random.Generator) -> None:
    """Solid class colour (jittered per instance) plus slight per-pixel noise, in place."""
    base = np.array(SHAPE_COLORS[cls], dtype=np.float32) + rng.uniform(-20, 20, 3)
    n = int(mask.sum())
    img[mask] = base[None] + rng.normal(0, 6, size=(n, 3))


def _render(rng: np.random.Generator, height: int, width: int, num_shapes: int,
            size_range: Tuple[float, float], cls_fixed: Optional[str] = None):
    """Returns ``(uint8 image, [(cls, poly, mask)])``."""
    img = _background(rng, height, width)
    shapes = []
    for cls, poly in _place_shapes(rng, height, width, num_shapes, size_range,
                                   cls_fixed=cls_fixed):
        mask = _rasterize(poly, height, width)
        if not mask.any():
            continue
        _paint(img, mask, cls, rng)
        shapes.append((cls, poly, mask))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), shapes


def _rng(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAMS[(dataset, split)], int(index)])


def _save_jpg(img: np.ndarray, path: str) -> None:
    Image.fromarray(img).save(path, format='JPEG', quality=JPEG_QUALITY)


def _save_png(img: np.ndarray, path: str) -> None:
    Image.fromarray(img).save(path, format='PNG', optimize=False)


def _fresh_dir(path: str) -> str:
    """(Re)create one of *our* output folders empty, so no stale files from a run with larger
    counts survive (mmseg/mmpretrain scan folders)."""
    if osp.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def _scene(dataset: str, seed: int, split: str, index: int, size: int, max_shapes: int,
           size_range: Tuple[float, float]):
    rng = _rng(seed, dataset, split, index)
    n = int(rng.integers(1, max_shapes + 1))
    return _render(rng, size, size, n, size_range)


def coco_scene(seed: int, split: str, index: int, size: int = 128, max_shapes: int = 3,
               size_range: Tuple[float, float] = (0.25, 0.6)):
    """The ``index``-th (0-based) image of the COCO ``split`` ('train'/'val') before JPEG
    encoding: ``(HxWx3 uint8, [(class, polygon (N, 2) x/y, painted bool mask)])``."""
    return _scene('coco', seed, split, index, size, max_shapes, size_range)


def ade_scene(seed: int, split: str, index: int, size: int = 128, max_shapes: int = 3,
              size_range: Tuple[float, float] = (0.25, 0.6)):
    """Like :func:`coco_scene` for the ADE ``split`` ('train'/'val')."""
    return _scene('ade', seed, split, index, size, max_shapes, size_range)


# --------------------------------------------------------------------------------------------
# COCO instances
# --------------------------------------------------------------------------------------------


def make_coco(out: str, seed: int = 0, num_train: int = 200, num_val: int = 50,
              size: int = 128, max_shapes: int = 3,
              size_range: Tuple[float, float] = (0.25, 0.6)) -> Dict[str, int]:
    """Write a COCO-instances dataset with its root at ``out``::

        out/train2017/000000000001.jpg ...   out/val2017/...
        out/annotations/instances_train2017.json   instances_val2017.json
        out/annotations/image_info_val2017.json    (the val images and categories only, the
                                                    layout of COCO's test-dev image info)

    1..``max_shapes`` non-overlapping shapes per ``size x size`` image; categories
    :data:`COCO_DEMO_CLASSES` with ids 1..4; one polygon per instance (the circle is a 32-gon),
    ``bbox`` ``[x, y, w, h]`` of the polygon, ``area`` = pixels of the mask, ``iscrowd`` 0.
    Returns counts.
    """
    stats = {}
    ann_dir = osp.join(out, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    categories = [dict(id=i + 1, name=c, supercategory='shape')
                  for i, c in enumerate(COCO_DEMO_CLASSES)]
    cat_id = {c: i + 1 for i, c in enumerate(COCO_DEMO_CLASSES)}
    for split, num in (('train', num_train), ('val', num_val)):
        img_dir = _fresh_dir(osp.join(out, f'{split}2017'))
        images, annotations = [], []
        for i in range(num):
            img, shapes = coco_scene(seed, split, i, size, max_shapes, size_range)
            image_id = i + 1
            file_name = f'{image_id:012d}.jpg'
            _save_jpg(img, osp.join(img_dir, file_name))
            images.append(dict(id=image_id, file_name=file_name, height=size, width=size))
            for cls, poly, mask in shapes:
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=cat_id[cls],
                    segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]],
                    area=float(mask.sum()),
                    bbox=[round(float(x0), 2), round(float(y0), 2),
                          round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                    iscrowd=0))
        coco = dict(
            info=dict(description='addp-mm synthetic demo (shapes on skimage photographs)',
                      version='1.0', year=2024, contributor='addp-mm', url='',
                      date_created=''),
            licenses=[], images=images, annotations=annotations, categories=categories)
        with open(osp.join(ann_dir, f'instances_{split}2017.json'), 'w') as f:
            json.dump(coco, f, separators=(',', ':'))
        if split == 'val':  # the images without annotations, as COCO's test-dev image info
            info = {k: v for k, v in coco.items() if k != 'annotations'}
            with open(osp.join(ann_dir, 'image_info_val2017.json'), 'w') as f:
                json.dump(info, f, separators=(',', ':'))
        stats[f'{split}_images'] = len(images)
        stats[f'{split}_instances'] = len(annotations)
    return stats


# --------------------------------------------------------------------------------------------
# ADE20K-style semantic segmentation
# --------------------------------------------------------------------------------------------


def _outer_ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px (8-neighbourhood) outside ``mask``."""
    grown = mask.copy()
    for _ in range(width):
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        g[1:, 1:] |= grown[:-1, :-1]
        g[1:, :-1] |= grown[:-1, 1:]
        g[:-1, 1:] |= grown[1:, :-1]
        g[:-1, :-1] |= grown[1:, 1:]
        grown = g
    return grown & ~mask


def make_ade(out: str, seed: int = 0, num_train: int = 200, num_val: int = 50,
             size: int = 128, max_shapes: int = 3,
             size_range: Tuple[float, float] = (0.25, 0.6),
             ignore_border: int = 1) -> Dict[str, int]:
    """Write an ADE20K-style dataset with its root at ``out``::

        out/images/training/ade_demo_train_00000.jpg       out/images/validation/...
        out/annotations/training/ade_demo_train_00000.png  out/annotations/validation/...

    Labels (uint8, single channel): 0 on a ``ignore_border``-px ring just outside every shape
    (ignored after mmseg's ``reduce_zero_label``), 1 = background, 2..5 = circle, square,
    triangle, star; i.e. after reduction the classes are :data:`ADE_DEMO_CLASSES`.
    """
    stats = {}
    label_of = {c: i + 2 for i, c in enumerate(SHAPE_CLASSES)}
    for split, folder, num in (('train', 'training', num_train),
                               ('val', 'validation', num_val)):
        img_dir = _fresh_dir(osp.join(out, 'images', folder))
        ann_dir = _fresh_dir(osp.join(out, 'annotations', folder))
        counts = np.zeros(len(SHAPE_CLASSES) + 2, dtype=np.int64)
        for i in range(num):
            img, shapes = ade_scene(seed, split, i, size, max_shapes, size_range)
            seg = np.ones((size, size), dtype=np.uint8)
            for cls, _, mask in shapes:
                if ignore_border > 0:
                    seg[_outer_ring(mask, ignore_border)] = 0
            for cls, _, mask in shapes:
                seg[mask] = label_of[cls]
            counts += np.bincount(seg.reshape(-1), minlength=len(counts))
            stem = f'ade_demo_{split}_{i:05d}'
            _save_jpg(img, osp.join(img_dir, stem + '.jpg'))
            _save_png(seg, osp.join(ann_dir, stem + '.png'))
        stats[f'{split}_images'] = num
        stats[f'{split}_pixels_ignored'] = int(counts[0])
    return stats


# --------------------------------------------------------------------------------------------
# ImageNet-style classification
# --------------------------------------------------------------------------------------------


def make_imagenet(out: str, seed: int = 0, num_train_per_class: int = 60,
                  num_val_per_class: int = 20, size: int = 128,
                  size_range: Tuple[float, float] = (0.45, 0.8)) -> Dict[str, int]:
    """Write a class-folder dataset with its root at ``out``::

        out/train/<class>/<class>_00000.jpg   out/val/<class>/...
        out/meta/train.txt   out/meta/val.txt   ("<class>/<class>_00000.jpg <label>", paths
                                                 relative to train/ resp. val/)
        out/classes.txt      (one class name per line, line k = label k)

    One big shape per image; classes :data:`IMAGENET_DEMO_CLASSES`. For mmpretrain:
    ``data_root=out, ann_file='meta/train.txt', data_prefix='train'``.
    """
    stats = {}
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    with open(osp.join(out, 'classes.txt'), 'w') as f:
        f.write(''.join(c + '\n' for c in IMAGENET_DEMO_CLASSES))
    for split, num in (('train', num_train_per_class), ('val', num_val_per_class)):
        split_dir = _fresh_dir(osp.join(out, split))
        lines = []
        # one random stream per (class, index): counts of one class do not change the others
        for label, cls in enumerate(IMAGENET_DEMO_CLASSES):
            os.makedirs(osp.join(split_dir, cls))
            for i in range(num):
                rng = _rng(seed, 'imagenet', split, label * 1_000_000 + i)
                img, _ = _render(rng, size, size, 1, size_range, cls_fixed=cls)
                rel = f'{cls}/{cls}_{i:05d}.jpg'
                _save_jpg(img, osp.join(split_dir, rel))
                lines.append(f'{rel} {label}\n')
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write(''.join(lines))
        stats[f'{split}_images'] = len(lines)
    return stats


# --------------------------------------------------------------------------------------------
# Unlabeled images for self-supervised pretraining
# --------------------------------------------------------------------------------------------

#: the (nested) sub-folders of the unlabeled set; images are spread over them round-robin
UNLABELED_SUBDIRS: Tuple[str, ...] = ('set_a', 'set_b/part_1', 'set_b/part_2', 'set_c/x/y')


def make_unlabeled(out: str, seed: int = 0, num: int = 64, size: int = 256,
                   png_every: int = 4) -> Dict[str, int]:
    """Write ``num`` images into nested sub-folders of ``out`` (:data:`UNLABELED_SUBDIRS`):
    photograph crops with 0-4 shapes, short side ``size`` (some are landscape/portrait with the
    long side 1.25x), every ``png_every``-th one a ``.png``, the rest ``.jpg``."""
    for top in sorted({d.split('/')[0] for d in UNLABELED_SUBDIRS}):
        if osp.isdir(osp.join(out, top)):
            shutil.rmtree(osp.join(out, top))
    for d in UNLABELED_SUBDIRS:
        os.makedirs(osp.join(out, d))
    n_png = 0
    for i in range(num):
        rng = _rng(seed, 'unlabeled', 'all', i)
        kind = int(rng.integers(3))
        long_side = int(round(size * 1.25))
        h, w = [(size, size), (size, long_side), (long_side, size)][kind]
        img, _ = _render(rng, h, w, int(rng.integers(0, 5)), (0.15, 0.45))
        sub = UNLABELED_SUBDIRS[i % len(UNLABELED_SUBDIRS)]
        if png_every and i % png_every == png_every - 1:
            _save_png(img, osp.join(out, sub, f'img_{i:05d}.png'))
            n_png += 1
        else:
            _save_jpg(img, osp.join(out, sub, f'img_{i:05d}.jpg'))
    return dict(images=num, png=n_png, jpg=num - n_png)


# --------------------------------------------------------------------------------------------
# Real images: scikit-learn's handwritten digits
# --------------------------------------------------------------------------------------------

#: digit class names in label order
DIGIT_CLASSES: Tuple[str, ...] = tuple(str(d) for d in range(10))


def make_digits(out: str, seed: int = 0, size: int = 32, val_fraction: float = 0.2,
                low_label_fraction: float = 0.1) -> Dict[str, int]:
    """Write scikit-learn's digits (``sklearn.datasets.load_digits``: 1,797 8x8 scans with
    values 0-16, inside the package, no download) as ``size`` x ``size`` 8-bit grayscale PNGs::

        out/train/<d>/digit_<k>.png   out/val/<d>/digit_<k>.png   (k = index in load_digits)
        out/meta/train.txt  out/meta/val.txt  ("<d>/digit_<k>.png <d>", relative to train/ resp. val/)
        out/meta/train_10pct.txt  (a per-class ``low_label_fraction`` subset of train.txt, paths
                                   relative to train/)
        out/classes.txt

    The split is stratified and fixed by ``seed``: per class, ``round(val_fraction * n)`` images
    go to val and ``max(1, round(low_label_fraction * n_train))`` of the rest to the low-label
    list. Upsampling is bicubic (Pillow). For mmpretrain: ``data_root=out,
    ann_file='meta/train_10pct.txt', data_prefix='train'``; for pretraining without labels, the
    ``train/`` folder.
    """
    from sklearn.datasets import load_digits  # pinned in requirements.txt; data ships inside

    digits = load_digits()
    images, labels = digits.images, digits.target
    rng = np.random.default_rng(seed)
    split_of = {}
    low_label = set()
    for d in range(len(DIGIT_CLASSES)):
        idx = np.flatnonzero(labels == d)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(val_fraction * len(idx)))
        val, train = idx[:n_val], idx[n_val:]
        split_of.update({int(k): 'val' for k in val})
        split_of.update({int(k): 'train' for k in train})
        n_low = max(1, int(round(low_label_fraction * len(train))))
        low_label.update(int(k) for k in train[:n_low])
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    with open(osp.join(out, 'classes.txt'), 'w') as f:
        f.write(''.join(c + '\n' for c in DIGIT_CLASSES))
    lines = {'train': [], 'val': [], 'train_10pct': []}
    for split in ('train', 'val'):
        split_dir = _fresh_dir(osp.join(out, split))
        for c in DIGIT_CLASSES:
            os.makedirs(osp.join(split_dir, c))
    for k in range(len(images)):
        split, label = split_of[k], int(labels[k])
        pixels = np.round(images[k] * (255.0 / 16.0)).astype(np.uint8)
        img = Image.fromarray(pixels, mode='L').resize((size, size), Image.BICUBIC)
        rel = f'{label}/digit_{k:04d}.png'
        img.save(osp.join(out, split, rel))
        lines[split].append(f'{rel} {label}\n')
        if k in low_label:
            lines['train_10pct'].append(f'{rel} {label}\n')
    for name, rows in lines.items():
        with open(osp.join(out, 'meta', f'{name}.txt'), 'w') as f:
            f.write(''.join(rows))
    return {f'{name}_images': len(rows) for name, rows in lines.items()}


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


def _dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(osp.getsize(osp.join(root, f)) for f in files)
    return total


def make_all(out: str, seed: int = 0, num_train: int = 200, num_val: int = 50,
             size: int = 128, imagenet_train: int = 60, imagenet_val: int = 20,
             num_unlabeled: int = 64, unlabeled_size: int = 256,
             parts: Sequence[str] = ('coco', 'ade', 'imagenet', 'unlabeled', 'digits'),
             verbose: bool = True, digits_size: int = 32) -> Dict[str, Dict[str, int]]:
    """Write ``out/coco``, ``out/ade``, ``out/imagenet``, ``out/unlabeled`` and
    ``out/digits`` (those in ``parts``); ``num_train``/``num_val`` are the COCO and ADE image counts, ``imagenet_*`` the
    per-class counts. Returns (and with ``verbose`` prints) a summary."""
    jobs = {
        'coco': lambda d: make_coco(d, seed, num_train, num_val, size),
        'ade': lambda d: make_ade(d, seed, num_train, num_val, size),
        'imagenet': lambda d: make_imagenet(d, seed, imagenet_train, imagenet_val, size),
        'unlabeled': lambda d: make_unlabeled(d, seed, num_unlabeled, unlabeled_size),
        'digits': lambda d: make_digits(d, seed, digits_size),
    }
    unknown = set(parts) - set(jobs)
    if unknown:
        raise ValueError(f'unknown parts {sorted(unknown)}; choose from {list(jobs)}')
    summary = {}
    if verbose:
        names = [n for n, _ in available_backgrounds()]
        print(f'backgrounds ({len(names)}): {", ".join(names)}')
    for name in jobs:
        if name not in parts:
            continue
        d = osp.join(out, name)
        t0 = time.perf_counter()
        stats = jobs[name](d)
        stats['bytes'] = _dir_size(d)
        summary[name] = stats
        if verbose:
            desc = ', '.join(f'{k}={v}' for k, v in stats.items() if k != 'bytes')
            print(f'{name:10s} -> {d}: {desc}; {stats["bytes"] / 2**20:.1f} MiB, '
                  f'{time.perf_counter() - t0:.1f} s')
    if verbose:
        print(f'classes: coco/imagenet {list(COCO_DEMO_CLASSES)}, '
              f'ade (reduce_zero_label) {list(ADE_DEMO_CLASSES)}')
    return summary
