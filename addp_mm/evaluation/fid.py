"""FID and Inception Score of a folder of generated images, through torch-fidelity.

The paper scores 50k samples against ImageNet-1k val at 256x256 with torch-fidelity. The
reference is either a folder of images (``ref_dir``: both sets go through
``torch_fidelity.calculate_metrics``) or cached statistics (``ref_stats``: an ``.npz`` with ``mu``
and ``sigma``, e.g. written by :func:`save_statistics` from the val images once).

Nothing is downloaded: the Inception-v3 weights come from a local file. torch-fidelity is
imported only when a metric is computed.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from addp_mm.checkpoint import WEIGHT_SOURCES, read_checkpoint, require_file
from addp_mm.errors import MissingFileError, UsageError

INCEPTION = 'inception-v3-compat'
INCEPTION_WEIGHTS_HINT = (
    f"torch-fidelity's Inception-v3 weights come from {WEIGHT_SOURCES['inception']}. Nothing is "
    'downloaded here: copy the file to this machine and pass its path.')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')
# what tools/generate.py writes next to the samples, not a sample itself
NOT_SAMPLES = ('grid.png', )
FEATURE_FID = '2048'
FEATURE_ISC = 'logits_unbiased'


def require_torch_fidelity():
    """``import torch_fidelity`` with a clear message when it is not installed."""
    try:
        import torch_fidelity
    except ImportError as e:
        raise ImportError('FID/IS need torch-fidelity (requirements.txt pins '
                          'torch-fidelity==0.4.0; tools/install.sh installs it)') from e
    return torch_fidelity


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------
def list_images(folder: str, recursive: bool = False,
                exclude: Sequence[str] = NOT_SAMPLES) -> List[str]:
    """Sorted image files of ``folder`` (sub-folders too when ``recursive``), without ``exclude``
    names (``grid.png``)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist')
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in names:
            if name.lower().endswith(IMAGE_EXTENSIONS) and name not in exclude:
                files.append(osp.join(root, name))
        if not recursive:
            break
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder!r}'
                                + ('' if recursive else ' (sub-folders are not searched)'))
    return sorted(files)


class ImageFiles(Dataset):
    """Images as uint8 RGB ``3 x H x W`` tensors, what torch-fidelity's extractors take.

    Args:
        files: image paths.
        resize: if given, torchvision's ``Resize(resize)`` (short side, bilinear with PIL's
            antialiasing) then ``CenterCrop(resize)``: the release's ``prepare_imagenet_val.py``
            (ImageNet val images -> 256x256 references). Without it every image must have the
            size of the first one (torch-fidelity batches them).
    """

    def __init__(self, files: Sequence[str], resize: Optional[int] = None):
        self.files = list(files)
        self._transform = None
        if resize:
            from torchvision import transforms
            self._transform = transforms.Compose(
                [transforms.Resize(resize), transforms.CenterCrop(resize)])
        self._size = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as img:
            img = img.convert('RGB')
            if self._transform is not None:
                img = self._transform(img)
            else:
                self._check_size(img.size, i)
            return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()

    def _check_size(self, size, i: int) -> None:
        if self._size is None:
            with Image.open(self.files[0]) as first:
                self._size = first.size
        if tuple(size) != tuple(self._size):
            raise UsageError(
                f'{self.files[i]} is {size[0]}x{size[1]} but {self.files[0]} is '
                f'{self._size[0]}x{self._size[1]}: images of different sizes cannot be batched. '
                'Resize the reference images, e.g. tools/fid_is.py --ref-resize 256 (ImageNet val, '
                "as the release's prepare_imagenet_val.py)")


def image_dataset(folder: str, recursive: bool = False, resize: Optional[int] = None) -> ImageFiles:
    return ImageFiles(list_images(folder, recursive), resize)


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def load_statistics(path: str, dims: Optional[int] = None) -> Dict[str, np.ndarray]:
    """``{'mu': (D,), 'sigma': (D, D)}`` (float64) from an ``.npz``: ours
    (``--save-ref-stats``), or one another generation project publishes (ADM's reference batches
    hold ``mu`` / ``sigma`` beside ``mu_s`` / ``sigma_s`` and the images ``arr_0``: only ``mu`` and
    ``sigma`` are read, without loading the images). ``dims``: the feature size they must have
    (2048 for FID's Inception pool features)."""
    key = 'FID statistics file (--ref-stats)'
    require_file(path, key, 'Give an .npz with mu and sigma, e.g. written by tools/fid_is.py '
                 '--save-ref-stats.')
    if path.endswith('.npz'):
        try:
            archive = np.load(path, allow_pickle=False)  # arrays only: nothing is unpickled
        except (ValueError, OSError) as e:
            raise UsageError(f'{key} {path!r}: not a NumPy .npz archive ({e})') from None
        with archive:
            missing = [k for k in ('mu', 'sigma') if k not in archive.files]
            if missing:
                raise UsageError(f'{key} {path!r}: no {missing} array(s) (it holds {archive.files}); '
                               'write one with tools/fid_is.py --save-ref-stats NPZ --ref-dir DIR')
            try:
                mu, sigma = archive['mu'], archive['sigma']
            except ValueError:  # object arrays: read_checkpoint refuses them (or reads a trusted file)
                f = read_checkpoint(path, key)
                mu, sigma = f['mu'], f['sigma']
    else:
        f = read_checkpoint(path, key)
        missing = [k for k in ('mu', 'sigma') if k not in f]
        if missing:
            raise UsageError(f'{key} {path!r}: no {missing} array(s) (found {list(f.keys())})')
        mu, sigma = f['mu'], f['sigma']
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise UsageError(f'{key} {path!r}: mu {mu.shape} and sigma {sigma.shape} do not match')
    stats = dict(mu=mu, sigma=sigma)
    if dims is not None:
        check_feature_size(stats, dims, path)
    return stats


def check_feature_size(stats: Dict[str, np.ndarray], dims: int, path: str) -> None:
    """Reference statistics ``stats`` (read from ``path``) must be of ``dims``-d features."""
    if stats['mu'].shape[0] != dims:
        raise UsageError(f'FID statistics file (--ref-stats) {path!r}: statistics of '
                         f'{stats["mu"].shape[0]}-d features, but the FID features here are '
                         f'{dims}-d (Inception pool3: 2048): the file was computed with another '
                         'feature extractor or layer')


def _check_weights(feature_extractor: str, weights: Optional[str]) -> None:
    if feature_extractor == INCEPTION:
        if weights is None:
            raise MissingFileError(f'Inception weights: no path was given. {INCEPTION_WEIGHTS_HINT}')
        require_file(weights, 'Inception weights', source='inception')
    elif weights is not None:
        require_file(weights, 'feature extractor weights')


def _fidelity_kwargs(feature_extractor: str, weights: Optional[str], batch_size: int,
                     device: Optional[Union[str, torch.device]], verbose: bool,
                     save_cpu_ram: bool) -> Dict:
    if device is None:
        cuda = torch.cuda.is_available()
    else:
        cuda = torch.device(device).type == 'cuda'
    kwargs = dict(feature_extractor=feature_extractor, batch_size=batch_size, cuda=cuda,
                  verbose=verbose, cache=False, save_cpu_ram=save_cpu_ram,
                  feature_layer_fid=FEATURE_FID, feature_layer_isc=FEATURE_ISC)
    if weights is not None:
        kwargs['feature_extractor_weights_path'] = weights
    return kwargs


def extract_features(dataset: Dataset, layers: Sequence[str] = (FEATURE_FID, FEATURE_ISC),
                     inception_weights: Optional[str] = None,
                     feature_extractor: str = INCEPTION, batch_size: int = 64,
                     device: Optional[Union[str, torch.device]] = None, verbose: bool = False,
                     save_cpu_ram: bool = False) -> Dict[str, torch.Tensor]:
    """torch-fidelity features of every image: ``{layer: N x D}``, computed the way
    ``calculate_metrics`` computes them."""
    _check_weights(feature_extractor, inception_weights)
    require_torch_fidelity()
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset
    kwargs = _fidelity_kwargs(feature_extractor, inception_weights, batch_size, device, verbose,
                              save_cpu_ram)
    cuda = kwargs.pop('cuda')
    extractor = create_feature_extractor(feature_extractor, list(layers), cuda=cuda, **kwargs)
    return get_featuresdict_from_dataset(dataset, extractor, batch_size, cuda, save_cpu_ram,
                                         verbose)


def statistics_from_features(features: torch.Tensor) -> Dict[str, np.ndarray]:
    """FID statistics (mean and covariance, float64) of ``N x D`` features, as torch-fidelity."""
    require_torch_fidelity()
    from torch_fidelity.metric_fid import fid_features_to_statistics
    stats = fid_features_to_statistics(features)
    return {k: np.asarray(stats[k], np.float64) for k in ('mu', 'sigma')}


def fid_from_statistics(stats1: Dict[str, np.ndarray], stats2: Dict[str, np.ndarray]) -> float:
    """Frechet distance of two Gaussians (torch-fidelity's formula)."""
    require_torch_fidelity()
    from torch_fidelity import KEY_METRIC_FID
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    s1 = {k: np.asarray(v, np.float64) for k, v in stats1.items()}
    s2 = {k: np.asarray(v, np.float64) for k, v in stats2.items()}
    if s1['mu'].shape != s2['mu'].shape:
        raise UsageError(f"feature sizes differ: {s1['mu'].shape} vs {s2['mu'].shape} (statistics "
                         'of another feature extractor or layer?)')
    return float(fid_statistics_to_metric(s1, s2, False)[KEY_METRIC_FID])


def save_statistics(folder: str, path: str, recursive: bool = True, resize: Optional[int] = None,
                    **feature_kwargs) -> Dict[str, np.ndarray]:
    """Compute the FID statistics of the images in ``folder`` and write them to ``path`` (.npz)."""
    feats = extract_features(image_dataset(folder, recursive, resize), layers=(FEATURE_FID, ),
                             **feature_kwargs)
    stats = statistics_from_features(feats[FEATURE_FID])
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    np.savez(path, mu=stats['mu'], sigma=stats['sigma'], num_images=len(feats[FEATURE_FID]))
    return stats


# ---------------------------------------------------------------------------------------------
# the metrics
# ---------------------------------------------------------------------------------------------
def compute_fid_is(gen_dir: str, ref_dir: Optional[str] = None, ref_stats: Optional[str] = None,
                   inception_weights: Optional[str] = None, feature_extractor: str = INCEPTION,
                   batch_size: int = 64, device: Optional[Union[str, torch.device]] = None,
                   isc: bool = True, isc_splits: int = 10, ref_recursive: bool = True,
                   ref_resize: Optional[int] = None, verbose: bool = False,
                   save_cpu_ram: bool = False) -> Dict[str, float]:
    """FID of the images in ``gen_dir`` against ``ref_dir`` or ``ref_stats``, and their IS.

    Args:
        gen_dir: generated PNGs (``grid.png`` is skipped; sub-folders are not searched).
        ref_dir: reference images (sub-folders searched when ``ref_recursive``; ``ref_resize``
            resizes + center-crops them to a square, e.g. 256 for ImageNet val).
        ref_stats: ``.npz`` with the reference ``mu`` / ``sigma`` instead of ``ref_dir``.
        inception_weights: local path of torch-fidelity's Inception-v3 weights (required for
            the default extractor).
        feature_extractor: a torch-fidelity registered extractor name.
        isc, isc_splits: compute the Inception Score of the generated images (10 splits, as
            torch-fidelity's default).

    Returns:
        ``{'fid', 'is_mean', 'is_std', 'num_gen', 'num_ref'}`` (IS keys only with ``isc``).
    """
    if (ref_dir is None) == (ref_stats is None):
        raise UsageError('give exactly one of ref_dir and ref_stats')
    reference = load_statistics(ref_stats) if ref_stats is not None else None  # fail fast
    _check_weights(feature_extractor, inception_weights)
    tf = require_torch_fidelity()
    gen = image_dataset(gen_dir)
    out = dict(num_gen=len(gen))
    if ref_dir is not None:
        ref = image_dataset(ref_dir, ref_recursive, ref_resize)
        kwargs = _fidelity_kwargs(feature_extractor, inception_weights, batch_size, device,
                                  verbose, save_cpu_ram)
        metrics = tf.calculate_metrics(input1=gen, input2=ref, fid=True, isc=isc,
                                       isc_splits=isc_splits, **kwargs)
        out.update(fid=float(metrics[tf.KEY_METRIC_FID]), num_ref=len(ref))
    else:
        layers = (FEATURE_FID, FEATURE_ISC) if isc else (FEATURE_FID, )
        feats = extract_features(gen, layers, inception_weights, feature_extractor, batch_size,
                                 device, verbose, save_cpu_ram)
        gen_stats = statistics_from_features(feats[FEATURE_FID])
        check_feature_size(reference, gen_stats['mu'].shape[0], ref_stats)
        out['fid'] = fid_from_statistics(gen_stats, reference)
        if isc:
            from torch_fidelity.metric_isc import isc_featuresdict_to_metric
            metrics = isc_featuresdict_to_metric(feats, FEATURE_ISC, isc_splits=isc_splits,
                                                 verbose=verbose)
        out['num_ref'] = None
    if isc:
        out.update(is_mean=float(metrics[tf.KEY_METRIC_ISC_MEAN]),
                   is_std=float(metrics[tf.KEY_METRIC_ISC_STD]))
    return out
