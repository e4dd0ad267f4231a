"""``LoadImageChecked``: load any image of an image folder as 8-bit BGR, or say which file is bad.

mmcv's ``LoadImageFromFile`` decodes with OpenCV and stops on a truncated or non-image file with
a bare ``AssertionError`` (some OpenCV builds even decode a truncated JPEG partly grey, silently);
it cannot skip such a file. For pretraining on a folder of images (where one bad file among
millions is common) this transform decodes with Pillow, fully, and:

- converts every readable image to 3-channel 8-bit BGR, like ``LoadImageFromFile``: grayscale,
  grayscale + alpha, RGBA (alpha dropped), palette (``P``), 16-bit and 32-bit integer images
  (scaled to 8 bit), CMYK;
- treats a truncated or undecodable file as bad: ``on_bad_file='error'`` (default) raises an
  error naming the file and the fix; ``on_bad_file='skip'`` logs a warning with the file and the
  running count of skipped files, and returns ``None``, which makes mmengine's dataset draw
  another sample (``BaseDataset.max_refetch``).
"""
import warnings
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.fileio import get
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS
from PIL import Image, UnidentifiedImageError

from addp_mm.errors import UsageError

ON_BAD_FILE = ('error', 'skip')


class BadImageError(UsageError):
    """A file of the dataset cannot be read as an image."""


def to_bgr_uint8(img: Image.Image) -> np.ndarray:
    """Any PIL image -> ``H x W x 3`` uint8 BGR."""
    if img.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
        arr = np.asarray(img)
        if img.mode == 'F':
            arr = np.clip(arr, 0, 1) * 255.
        else:
            top = 65535 if img.mode.startswith('I;16') or arr.max(initial=0) <= 65535 else arr.max()
            arr = arr.astype(np.float64) * (255. / top)
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    rgb = np.asarray(img.convert('RGB'))  # L, LA, P, PA, RGBA, CMYK, YCbCr, 1, ...
    return np.ascontiguousarray(rgb[..., ::-1])


@TRANSFORMS.register_module()
class LoadImageChecked(BaseTransform):
    """Load ``results['img_path']`` into ``results['img']`` (BGR uint8 or float32).

    Args:
        to_float32 (bool): return a float32 image.
        on_bad_file (str): ``'error'`` (default) or ``'skip'`` (module docstring).
    """

    skipped = 0  # per process (each dataloader worker counts its own)

    def __init__(self, to_float32: bool = False, on_bad_file: str = 'error',
                 backend_args: Optional[dict] = None):
        if on_bad_file not in ON_BAD_FILE:
            raise UsageError(f'LoadImageChecked: on_bad_file={on_bad_file!r}, expected one of {ON_BAD_FILE}')
        self.to_float32 = to_float32
        self.on_bad_file = on_bad_file
        self.backend_args = backend_args

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            img = decode(get(path, backend_args=self.backend_args))
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            if self.on_bad_file == 'error':
                raise BadImageError(
                    f'{path}: not a readable image ({type(e).__name__}: {e}). Remove or replace the '
                    "file, or set on_bad_file='skip' in the pipeline's LoadImageChecked to skip such "
                    'files with a warning.') from e
            type(self).skipped += 1
            print_log(f'skipped {path}: not a readable image ({e}); {type(self).skipped} file(s) '
                      'skipped so far in this process', logger='current', level=30)
            return None
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(to_float32={self.to_float32}, on_bad_file={self.on_bad_file!r})'


def decode(data: bytes) -> np.ndarray:
    """Decode fully: a truncated file raises instead of coming back partly grey (unless
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` was set by the user)."""
    import io
    with warnings.catch_warnings():
        warnings.simplefilter('error', Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return to_bgr_uint8(img)
