"""The synthetic demo datasets: determinism and the on-disk formats mmdet/mmseg/mmpretrain read."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from demo_data import (ADE_DEMO_CLASSES, COCO_DEMO_CLASSES,
                                        IMAGENET_DEMO_CLASSES, SHAPE_CLASSES, SHAPE_COLORS,
                                        ade_scene, coco_scene, make_all)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

SMALL = dict(num_train=10, num_val=4, size=96, imagenet_train=3, imagenet_val=2,
             num_unlabeled=6, unlabeled_size=256)


def _tree(root):
    files = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = osp.join(d, n)
            with open(p, 'rb') as f:
                files[osp.relpath(p, root)] = f.read()
    return files


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo'))
    summary = make_all(out, seed=3, verbose=False, **SMALL)
    return out, summary


def test_deterministic(demo, tmp_path):
    out, _ = demo
    make_all(str(tmp_path), seed=3, verbose=False, **SMALL)
    a, b = _tree(out), _tree(str(tmp_path))
    assert sorted(a) == sorted(b)
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    # a second run into the same folder replaces, leaves nothing stale behind
    make_all(str(tmp_path), seed=3, verbose=False, **dict(SMALL, num_train=5))
    c = _tree(str(tmp_path))
    assert len(os.listdir(osp.join(str(tmp_path), 'ade', 'images', 'training'))) == 5
    assert c['coco/val2017/000000000001.jpg'] == a['coco/val2017/000000000001.jpg']
    # another seed gives other images
    d = str(tmp_path / 'other')
    make_all(d, seed=4, verbose=False, parts=['coco'], **dict(SMALL, num_train=1, num_val=1))
    assert _tree(d)['coco/train2017/000000000001.jpg'] != a['coco/train2017/000000000001.jpg']


def _iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max(1, (a | b).sum())


def test_coco(demo):
    from pycocotools.coco import COCO
    out, summary = demo
    for split, num in (('train', SMALL['num_train']), ('val', SMALL['num_val'])):
        ann_file = osp.join(out, 'coco', 'annotations', f'instances_{split}2017.json')
        with open(ann_file) as f:
            raw = json.load(f)
        assert [c['name'] for c in raw['categories']] == list(COCO_DEMO_CLASSES)
        assert [c['id'] for c in raw['categories']] == [1, 2, 3, 4]
        coco = COCO(ann_file)
        assert sorted(coco.getImgIds()) == list(range(1, num + 1))
        assert len(coco.getAnnIds()) == summary['coco'][f'{split}_instances'] >= num
        assert coco.getCatIds(catNms=list(COCO_DEMO_CLASSES)) == [1, 2, 3, 4]
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            path = osp.join(out, 'coco', f'{split}2017', info['file_name'])
            img = np.asarray(Image.open(path))
            assert img.shape == (info['height'], info['width'], 3) == (96, 96, 3)
            ref_img, shapes = coco_scene(3, split, img_id - 1, size=96)
            assert np.abs(img.astype(int) - ref_img).mean() < 6  # the file is that scene (jpeg)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) == len(shapes) <= 3
            for ann, (cls, poly, painted) in zip(anns, shapes):
                assert ann['iscrowd'] == 0
                assert coco.loadCats(ann['category_id'])[0]['name'] == cls
                assert len(ann['segmentation']) == 1 and len(ann['segmentation'][0]) % 2 == 0
                if cls == 'circle':
                    assert len(ann['segmentation'][0]) == 64
                mask = coco.annToMask(ann)
                assert _iou(mask, painted) > 0.95
                assert abs(ann['area'] - mask.sum()) <= 0.05 * ann['area']
                x, y, w, h = ann['bbox']
                ys, xs = np.nonzero(mask)
                assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96
                assert 0.25 * 96 - 2 <= max(w, h) <= 0.6 * 96 + 2
                assert abs(xs.min() - x) <= 1.5 and abs(xs.max() + 1 - (x + w)) <= 1.5
                assert abs(ys.min() - y) <= 1.5 and abs(ys.max() + 1 - (y + h)) <= 1.5
                # the decoded jpeg shows the class colour inside the mask
                inner = painted & np.roll(painted, 2, 0) & np.roll(painted, -2, 0) \
                    & np.roll(painted, 2, 1) & np.roll(painted, -2, 1)
                mean = img[inner].astype(float).mean(0)
                assert np.abs(mean - SHAPE_COLORS[cls]).max() < 35
            # instances do not overlap
            masks = [coco.annToMask(a).astype(int) for a in anns]
            assert np.sum(masks, 0).max() <= 1


def test_ade(demo):
    out, _ = demo
    assert ADE_DEMO_CLASSES == ('background',) + SHAPE_CLASSES
    seen = set()
    for split, folder, num in (('train', 'training', SMALL['num_train']),
                               ('val', 'validation', SMALL['num_val'])):
        imgs = sorted(os.listdir(osp.join(out, 'ade', 'images', folder)))
        segs = sorted(os.listdir(osp.join(out, 'ade', 'annotations', folder)))
        assert len(imgs) == len(segs) == num
        assert [osp.splitext(f) for f in imgs] == [(osp.splitext(s)[0], '.jpg') for s in segs]
        for i, name in enumerate(segs):
            seg_img = Image.open(osp.join(out, 'ade', 'annotations', folder, name))
            assert seg_img.mode == 'L'
            seg = np.asarray(seg_img)
            img = np.asarray(Image.open(osp.join(out, 'ade', 'images', folder,
                                                 name[:-4] + '.jpg')))
            assert seg.shape == img.shape[:2] == (96, 96)
            values = set(np.unique(seg).tolist())
            assert values <= set(range(len(ADE_DEMO_CLASSES) + 1))
            assert 1 in values and 0 in values and len(values - {0, 1}) >= 1
            seen |= values
            _, shapes = ade_scene(3, split, i, size=96)
            for cls, _, mask in shapes:
                label = SHAPE_CLASSES.index(cls) + 2
                assert (seg[mask] == label).all()
                # reduce_zero_label: label k -> k - 1 indexes ADE_DEMO_CLASSES
                assert ADE_DEMO_CLASSES[label - 1] == cls
            # the ignore ring is thin: at most ~1 px around the shapes
            shape_px = (seg >= 2).sum()
            assert (seg == 0).sum() < 0.5 * shape_px
    assert seen == set(range(len(ADE_DEMO_CLASSES) + 1))


def test_imagenet(demo):
    out, _ = demo
    root = osp.join(out, 'imagenet')
    with open(osp.join(root, 'classes.txt')) as f:
        assert f.read().split('\n')[:-1] == list(IMAGENET_DEMO_CLASSES)
    for split, per_class in (('train', SMALL['imagenet_train']), ('val', SMALL['imagenet_val'])):
        assert sorted(os.listdir(osp.join(root, split))) == sorted(IMAGENET_DEMO_CLASSES)
        for cls in IMAGENET_DEMO_CLASSES:
            files = os.listdir(osp.join(root, split, cls))
            assert len(files) == per_class and all(f.endswith('.jpg') for f in files)
        with open(osp.join(root, 'meta', f'{split}.txt')) as f:
            lines = f.read().splitlines()
        assert len(lines) == per_class * len(IMAGENET_DEMO_CLASSES)
        for line in lines:
            rel, label = line.split(' ')
            cls = IMAGENET_DEMO_CLASSES[int(label)]
            assert rel.startswith(cls + '/')
            img = np.asarray(Image.open(osp.join(root, split, rel)))
            assert img.shape == (96, 96, 3)
            # one big shape: plenty of pixels near the class colour
            near = np.abs(img.astype(int) - SHAPE_COLORS[cls]).max(-1) < 45
            assert near.mean() > 0.04


def test_unlabeled(demo):
    out, _ = demo
    root = osp.join(out, 'unlabeled')
    paths = [osp.join(d, n) for d, _, names in os.walk(root) for n in names]
    assert len(paths) == SMALL['num_unlabeled']
    exts = {osp.splitext(p)[1] for p in paths}
    assert exts == {'.jpg', '.png'}
    assert max(osp.relpath(p, root).count(os.sep) for p in paths) >= 2  # nested
    for p in paths:
        with Image.open(p) as im:
            assert im.mode == 'RGB' and min(im.size) >= 256


def test_cli(tmp_path):
    spec = importlib.util.spec_from_file_location(
        'make_demo_data_tool', osp.join(ROOT, 'tools', 'make_demo_data.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(tmp_path), '--seed', '1', '--imagenet-train', '2', '--imagenet-val', '1',
               '--size', '64', '--only', 'imagenet'])
    assert sorted(os.listdir(tmp_path)) == ['imagenet']
    with open(osp.join(tmp_path, 'imagenet', 'meta', 'val.txt')) as f:
        assert len(f.read().splitlines()) == len(IMAGENET_DEMO_CLASSES)


def test_digits(demo):
    """Real scans from scikit-learn: every image once, stratified split, pixels follow the scan."""
    from sklearn.datasets import load_digits

    out, summary = demo
    root = osp.join(out, 'digits')
    assert summary['digits'] == dict(train_images=1438, val_images=359, train_10pct_images=143,
                                     bytes=summary['digits']['bytes'])
    rows = {}
    for name in ('train', 'val', 'train_10pct'):
        with open(osp.join(root, 'meta', f'{name}.txt')) as f:
            rows[name] = [line.split() for line in f.read().splitlines()]
    train = {p for p, _ in rows['train']}
    val = {p for p, _ in rows['val']}
    assert not train & val and len(train | val) == 1797
    assert {p for p, _ in rows['train_10pct']} <= train
    for name, split in (('train', 'train'), ('val', 'val'), ('train_10pct', 'train')):
        for p, label in rows[name]:
            assert p.split('/')[0] == label and osp.isfile(osp.join(root, split, p))
    # every class in every split, ~20% of each class in val
    digits = load_digits()
    for d in range(10):
        n = int((digits.target == d).sum())
        n_val = sum(1 for _, label in rows['val'] if label == str(d))
        assert n_val == round(0.2 * n)
        assert sum(1 for _, label in rows['train_10pct'] if label == str(d)) >= 1
    # the PNG is the bicubic upsample of scan k (0..16 -> 0..255), not some other image
    p, label = rows['val'][0]
    k = int(osp.basename(p)[len('digit_'):-len('.png')])
    img = Image.open(osp.join(root, 'val', p))
    assert img.mode == 'L' and img.size == (32, 32) and int(label) == digits.target[k]
    small = np.asarray(img.resize((8, 8), Image.BOX), dtype=np.float64)
    assert np.corrcoef(small.ravel(), digits.images[k].ravel())[0, 1] > 0.9
