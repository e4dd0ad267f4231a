"""Bad input in a pretraining image folder: every PNG mode loads as 8-bit BGR, a truncated JPEG
or a non-image file fails naming the file (or is skipped with a warning and a count), an empty
folder is a clear error."""
import io
import os.path as osp

import numpy as np
import pytest
from mmengine.logging import MMLogger
from mmpretrain.datasets import CustomDataset
from PIL import Image

from addp_mm.datasets import BadImageError, LoadImageChecked


def save(img, path, **kwargs):
    img.save(path, **kwargs)
    return str(path)


def load(path, **kwargs):
    return LoadImageChecked(**kwargs)(dict(img_path=str(path)))


@pytest.mark.parametrize('mode,make,bgr', [
    ('L', lambda: Image.new('L', (6, 4), 100), (100, 100, 100)),
    ('LA', lambda: Image.new('LA', (6, 4), (100, 7)), (100, 100, 100)),
    ('RGBA', lambda: Image.new('RGBA', (6, 4), (10, 20, 30, 40)), (30, 20, 10)),  # alpha dropped
    ('P', lambda: Image.new('RGB', (6, 4), (200, 50, 0)).quantize(4), (0, 50, 200)),
    ('I;16', lambda: Image.fromarray(np.full((4, 6), 40000, np.uint16)), (156, 156, 156)),  # 40000 * 255 / 65535
    ('1', lambda: Image.new('1', (6, 4), 1), (255, 255, 255)),
])
def test_every_png_mode_loads_as_8bit_bgr(tmp_path, mode, make, bgr):
    img = make()
    path = save(img, tmp_path / f'{mode.replace(";", "_")}.png')
    with Image.open(path) as check:
        assert check.mode.startswith(mode[0])  # the file really has that mode
    out = load(path)
    assert out['img'].dtype == np.uint8 and out['img'].shape == (4, 6, 3)
    assert out['img_shape'] == out['ori_shape'] == (4, 6)
    assert tuple(out['img'][2, 3]) == bgr


def test_jpeg_matches_opencv_and_float32(tmp_path):
    import mmcv
    rng = np.random.default_rng(0)
    path = save(Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)), tmp_path / 'a.jpg', quality=90)
    ours = load(path)['img']
    theirs = mmcv.imread(path)  # BGR, OpenCV's decoder
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2  # decoders may round differently
    assert load(path, to_float32=True)['img'].dtype == np.float32


def bad_files(folder):
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data, 'JPEG')
    (folder / 'truncated.jpg').write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (folder / 'notes.jpg').write_text('<html>not an image</html>')
    return str(folder / 'truncated.jpg'), str(folder / 'notes.jpg')


def test_truncated_jpeg_and_non_image_fail_naming_the_file(tmp_path):
    truncated, notes = bad_files(tmp_path)
    for path in (truncated, notes):
        with pytest.raises(BadImageError, match=rf"{osp.basename(path)}: not a readable image.*on_bad_file='skip'"):
            load(path)
    with pytest.raises(ValueError, match='on_bad_file'):
        LoadImageChecked(on_bad_file='ignore')


def test_skip_option_skips_with_a_warning_and_a_count(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    for i in range(3):
        save(Image.new('RGB', (8, 8), (i, 0, 0)), folder / f'good{i}.png')
    bad_files(folder)
    ds = CustomDataset(data_root=str(folder), with_label=False,
                       pipeline=[dict(type='LoadImageChecked', on_bad_file='skip'), dict(type='PackInputs')])
    assert len(ds) == 5
    LoadImageChecked.skipped = 0
    logger = MMLogger.get_current_instance()
    records = []
    handler = type('H', (__import__('logging').Handler,), {'emit': lambda self, r: records.append(r.getMessage())})()
    logger.addHandler(handler)
    try:
        samples = [ds[i] for i in range(len(ds))]  # a bad file makes the dataset draw another one
    finally:
        logger.removeHandler(handler)
    assert all(s['inputs'].shape == (3, 8, 8) for s in samples)
    assert LoadImageChecked.skipped >= 2
    skipped = [r for r in records if r.startswith('skipped ')]
    assert any('truncated.jpg' in r for r in skipped) and any('notes.jpg' in r for r in skipped)
    assert f'{LoadImageChecked.skipped} file(s) skipped so far' in skipped[-1]


def test_empty_image_folder_is_a_clear_error(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(RuntimeError, match=r"Found 0 files in subfolders of.*empty.*Supported extensions"):
        CustomDataset(data_root=str(tmp_path / 'empty'), with_label=False, pipeline=[])
