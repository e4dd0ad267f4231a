"""FID / IS plumbing (addp_mm.evaluation, tools/fid_is.py) with a tiny stand-in feature extractor,
offline: torch-fidelity's code computes the statistics and metrics, only the network is small."""
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require, tool
from PIL import Image

from addp_mm.evaluation import compute_fid_is, list_images, load_statistics, save_statistics
from addp_mm.errors import UsageError
from addp_mm.evaluation.fid import ImageFiles

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STAND_IN = 'addp-test-stand-in'


def _fid_tool():
    return tool('fid_is')


def _write_images(folder, num, shift=0, size=32, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(num):
        low = torch.rand(1, 3, 4, 4, generator=g)
        img = F.interpolate(low, size=(size, size), mode='bilinear', align_corners=False)[0]
        arr = (img.permute(1, 2, 0).numpy() * 200 + shift).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f'{i:06d}.png')
    return folder


@pytest.fixture(scope='module')
def stand_in(tmp_path_factory):
    """Register a small torch-fidelity feature extractor whose weights come from a local file."""
    tf = require('torch_fidelity', 'torch-fidelity computes FID / IS')
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    class StandIn(tf.FeatureExtractorBase):
        """uint8 images -> 2x2 average colours (12) -> 'features' (8) -> 'logits' (10)."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            state = torch.load(feature_extractor_weights_path, weights_only=True)
            self.register_buffer('proj', state['proj'])
            self.register_buffer('cls', state['cls'])

        def forward(self, x):
            pooled = F.adaptive_avg_pool2d(x.float() / 255., 2).flatten(1)
            feats = pooled @ self.proj
            out = {'2048': feats, 'logits_unbiased': feats @ self.cls}
            return tuple(out[name] for name in self.features_list)

        @staticmethod
        def get_provided_features_list():
            return ('2048', 'logits_unbiased')

        @staticmethod
        def get_default_feature_for_isc():
            return 'logits_unbiased'

        @staticmethod
        def get_default_feature_for_fid():
            return '2048'

        @staticmethod
        def get_default_feature_for_kid():
            return '2048'

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return 'logits_unbiased' if metric == 'isc' else '2048'

    if STAND_IN not in FEATURE_EXTRACTORS_REGISTRY:
        tf.register_feature_extractor(STAND_IN, StandIn)
    weights = tmp_path_factory.mktemp('stand_in') / 'stand_in.pth'
    g = torch.Generator().manual_seed(0)
    torch.save(dict(proj=torch.randn(12, 8, generator=g), cls=torch.randn(8, 10, generator=g)),
               weights)
    return dict(feature_extractor=STAND_IN, inception_weights=str(weights), batch_size=16,
                device='cpu', save_cpu_ram=True)


@pytest.fixture(scope='module')
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp('fid_images')
    gen = _write_images(root / 'gen', 40)
    # the grid tools/generate.py writes next to the samples is not a sample (and has another size)
    Image.fromarray(np.zeros((70, 70, 3), np.uint8)).save(gen / 'grid.png')
    ref = root / 'ref' / 'class_a'  # reference folders are searched recursively
    shutil.copytree(gen, ref)
    (ref / 'grid.png').unlink()
    shifted = _write_images(root / 'shifted', 40, shift=40)
    other = _write_images(root / 'other', 40, seed=1)
    return dict(gen=str(gen), ref=str(root / 'ref'), shifted=str(shifted), other=str(other))


def test_fid_with_itself_is_zero_and_grows_with_a_shift(stand_in, image_sets):
    same = compute_fid_is(image_sets['gen'], ref_dir=image_sets['ref'], isc_splits=2, **stand_in)
    assert same['num_gen'] == 40 and same['num_ref'] == 40  # grid.png skipped
    assert abs(same['fid']) < 1e-6
    assert np.isfinite(same['is_mean']) and same['is_mean'] >= 1.0 and same['is_std'] >= 0
    ref = image_sets['ref']
    other = compute_fid_is(image_sets['other'], ref_dir=ref, isc=False, **stand_in)
    shifted = compute_fid_is(image_sets['shifted'], ref_dir=ref, isc=False, **stand_in)
    assert 'is_mean' not in shifted
    assert shifted['fid'] > other['fid'] > 1e-3  # another draw: small; a brightness shift: large


def _features_by_hand(folder, weights):
    """The stand-in's features and logits of every sample in ``folder``, in NumPy (float64)."""
    w = torch.load(weights, weights_only=True)
    proj, cls = w['proj'].double().numpy(), w['cls'].double().numpy()
    feats = []
    for path in list_images(folder):
        x = np.asarray(Image.open(path).convert('RGB'), np.float64).transpose(2, 0, 1) / 255.
        c, h, w_ = x.shape
        pooled = x.reshape(c, 2, h // 2, 2, w_ // 2).mean(axis=(2, 4)).reshape(-1)
        feats.append(pooled @ proj)
    feats = np.stack(feats)
    return feats, feats @ cls


def test_fid_and_is_equal_the_textbook_formulas(stand_in, image_sets, tmp_path):
    """FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) (covariances with N - 1) and IS =
    exp(E_x KL(p(y|x) || p(y))) (one split), computed here with NumPy and scipy.linalg.sqrtm on
    the stand-in's features, equal what every path of ours reports."""
    from scipy import linalg

    from addp_mm.evaluation import fid_from_statistics, statistics_from_features
    feats_gen, logits_gen = _features_by_hand(image_sets['other'], stand_in['inception_weights'])
    feats_ref, _ = _features_by_hand(osp.join(image_sets['ref'], 'class_a'),
                                     stand_in['inception_weights'])
    mu1, mu2 = feats_gen.mean(0), feats_ref.mean(0)
    s1, s2 = np.cov(feats_gen, rowvar=False), np.cov(feats_ref, rowvar=False)
    fid = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
    p = np.exp(logits_gen - logits_gen.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    inception_score = float(np.exp((p * (np.log(p) - np.log(p.mean(0)))).sum(1).mean()))
    assert fid > 1e-2 and inception_score > 1.01  # not a degenerate case
    # the statistics and the distance on their own
    stats = statistics_from_features(torch.from_numpy(feats_gen).float())
    assert np.allclose(stats['mu'], mu1, atol=1e-5) and np.allclose(stats['sigma'], s1, atol=1e-5)
    assert fid_from_statistics(dict(mu=mu1, sigma=s1), dict(mu=mu2, sigma=s2)) == pytest.approx(
        fid, rel=1e-6)
    # the whole metric, against a folder and against saved statistics
    npz = tmp_path / 'ref.npz'
    save_statistics(image_sets['ref'], str(npz), **stand_in)
    for ref in (dict(ref_dir=image_sets['ref']), dict(ref_stats=str(npz))):
        metrics = compute_fid_is(image_sets['other'], isc_splits=1, **ref, **stand_in)
        assert metrics['fid'] == pytest.approx(fid, rel=1e-4), ref
        assert metrics['is_mean'] == pytest.approx(inception_score, rel=1e-4), ref


def test_cached_statistics_match_the_folder(stand_in, image_sets, tmp_path):
    npz = tmp_path / 'ref_stats.npz'
    stats = save_statistics(image_sets['ref'], str(npz), **stand_in)
    loaded = load_statistics(str(npz))
    assert loaded['mu'].shape == (8, ) and loaded['sigma'].shape == (8, 8)
    assert np.allclose(loaded['mu'], stats['mu']) and np.allclose(loaded['sigma'], stats['sigma'])
    for name in ('gen', 'shifted'):
        by_dir = compute_fid_is(image_sets[name], ref_dir=image_sets['ref'], isc_splits=2,
                                **stand_in)
        by_npz = compute_fid_is(image_sets[name], ref_stats=str(npz), isc_splits=2, **stand_in)
        assert by_npz['fid'] == pytest.approx(by_dir['fid'], rel=1e-5, abs=1e-6)
        assert by_npz['is_mean'] == pytest.approx(by_dir['is_mean'], rel=1e-5)


def test_fid_tool(stand_in, image_sets, tmp_path):
    tool = _fid_tool()
    common = ['--inception-weights', stand_in['inception_weights'], '--feature-extractor', STAND_IN,
              '--device', 'cpu', '--isc-splits', '2', '--batch-size', '16']
    npz = tmp_path / 'stats.npz'
    out = tmp_path / 'metrics.json'
    metrics = tool.main([image_sets['shifted'], '--ref-dir', image_sets['ref'], '--save-ref-stats',
                         str(npz), '--out', str(out)] + common)
    assert npz.is_file() and out.is_file() and metrics['fid'] > 1.0
    again = tool.main([image_sets['shifted'], '--ref-stats', str(npz)] + common)
    assert again['fid'] == pytest.approx(metrics['fid'], rel=1e-6)


def test_published_reference_batches_and_their_errors(stand_in, image_sets, tmp_path):
    """An ADM-style reference batch (``mu``, ``sigma`` beside ``mu_s``, ``sigma_s`` and the images
    ``arr_0``) gives the FID of our own statistics file; a file of another feature size, or without
    ``mu``, is a clear error naming the file."""
    ours = tmp_path / 'ours.npz'
    stats = save_statistics(image_sets['ref'], str(ours), **stand_in)
    adm = tmp_path / 'VIRTUAL_ref_batch.npz'
    np.savez(adm, arr_0=np.zeros((4, 32, 32, 3), np.uint8), mu=stats['mu'], sigma=stats['sigma'],
             mu_s=np.zeros(3), sigma_s=np.eye(3))
    by_ours = compute_fid_is(image_sets['shifted'], ref_stats=str(ours), isc=False, **stand_in)
    by_adm = compute_fid_is(image_sets['shifted'], ref_stats=str(adm), isc=False, **stand_in)
    assert by_adm['fid'] == pytest.approx(by_ours['fid'], rel=1e-9) and by_adm['fid'] > 1.0
    assert by_ours['num_gen'] == 40 and by_ours['num_ref'] is None  # a file: no image count
    wide = tmp_path / 'other_features.npz'
    np.savez(wide, mu=np.zeros(16), sigma=np.eye(16))  # the stand-in's features are 8-d
    with pytest.raises(UsageError, match=r"other_features\.npz.*16-d features.*8-d"):
        compute_fid_is(image_sets['shifted'], ref_stats=str(wide), isc=False, **stand_in)
    no_mu = tmp_path / 'images_only.npz'
    np.savez(no_mu, arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(UsageError, match=r"images_only\.npz.*no \['mu', 'sigma'\].*arr_0"):
        load_statistics(str(no_mu))
    with pytest.raises(UsageError, match='images_only.npz'):
        _fid_tool().main([image_sets['shifted'], '--ref-stats', str(no_mu), '--inception-weights',
                          stand_in['inception_weights'], '--feature-extractor', STAND_IN])


# ----------------------------------------------------------------------------------------------
# no torch-fidelity needed
# ----------------------------------------------------------------------------------------------
def test_missing_inception_weights_is_a_clear_error(tmp_path):
    gen = _write_images(tmp_path / 'gen', 2)
    with pytest.raises(FileNotFoundError, match=r'nope\.pth.*weights-inception-2015-12-05'):
        compute_fid_is(str(gen), ref_dir=str(gen), inception_weights=str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match='no path was given'):
        compute_fid_is(str(gen), ref_dir=str(gen))
    with pytest.raises(FileNotFoundError, match=r'nope\.pth'):
        _fid_tool().main([str(gen), '--ref-dir', str(gen), '--inception-weights',
                          str(tmp_path / 'nope.pth')])
    with pytest.raises(ValueError, match='exactly one'):
        compute_fid_is(str(gen), inception_weights=str(tmp_path / 'nope.pth'))


def test_image_listing_and_statistics_files(tmp_path):
    gen = _write_images(tmp_path / 'gen', 3, size=40)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(gen / 'grid.png')
    _write_images(gen / 'sub', 2)
    names = [osp.basename(f) for f in list_images(str(gen))]
    assert names == ['000000.png', '000001.png', '000002.png']
    assert len(list_images(str(gen), recursive=True)) == 5
    with pytest.raises(FileNotFoundError, match='no images'):
        list_images(str(tmp_path / 'gen' / 'sub' / '..' / '..'))
    # resize + center crop to a square
    img = ImageFiles([str(gen / '000000.png')], resize=24)[0]
    assert img.shape == (3, 24, 24) and img.dtype == torch.uint8
    np.savez(tmp_path / 'bad.npz', mean=np.zeros(3))
    with pytest.raises(UsageError, match='mu'):
        load_statistics(str(tmp_path / 'bad.npz'))
    with pytest.raises(FileNotFoundError, match='statistics'):
        load_statistics(str(tmp_path / 'missing.npz'))


def test_fid_tool_no_isc_and_ref_resize(stand_in, image_sets, tmp_path):
    """``--no-isc`` gives the FID alone (the same value); ``--ref-resize N`` resizes the short side
    of each reference image to N and center-crops it (references of mixed sizes work), which is
    what writing the resized images first gives."""
    from torchvision import transforms
    tool = _fid_tool()
    common = ['--inception-weights', stand_in['inception_weights'], '--feature-extractor', STAND_IN,
              '--device', 'cpu', '--isc-splits', '2', '--batch-size', '16']
    both = tool.main([image_sets['shifted'], '--ref-dir', image_sets['ref']] + common)
    fid_only = tool.main([image_sets['shifted'], '--ref-dir', image_sets['ref'], '--no-isc'] + common)
    assert 'is_mean' in both and 'is_mean' not in fid_only and 'is_std' not in fid_only
    assert fid_only['fid'] == pytest.approx(both['fid'], rel=1e-6)
    mixed, resized = tmp_path / 'mixed', tmp_path / 'resized'
    mixed.mkdir(), resized.mkdir()
    fit = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32)])
    for i, path in enumerate(sorted((osp.join(image_sets['other'], f) for f in
                                     os.listdir(image_sets['other'])))):
        with Image.open(path) as img:
            big = img.resize((48 + 8 * (i % 3), 40 + 16 * (i % 2)), Image.BICUBIC)
        big.save(mixed / f'{i:03d}.png')
        fit(big).save(resized / f'{i:03d}.png')
    with pytest.raises(ValueError, match='--ref-resize'):  # without it, mixed sizes cannot batch
        ImageFiles(list_images(str(mixed)))[1]
    by_flag = tool.main([image_sets['gen'], '--ref-dir', str(mixed), '--ref-resize', '32',
                         '--no-isc'] + common)
    by_hand = tool.main([image_sets['gen'], '--ref-dir', str(resized), '--no-isc'] + common)
    assert by_flag['fid'] == pytest.approx(by_hand['fid'], rel=1e-6) and by_flag['fid'] > 0


# ----------------------------------------------------------------------------------------------
# the statistics files, the weights, the options torch-fidelity is given, the images' messages
# ----------------------------------------------------------------------------------------------
def test_statistics_from_a_torch_file_and_shapes_that_do_not_match(tmp_path):
    """A ``.pth`` with ``mu`` / ``sigma`` reads as float64; a file without them names what it holds;
    a ``sigma`` of another size, or a ``mu`` that is not a vector, is refused."""
    torch.save(dict(mu=torch.arange(3.), sigma=torch.eye(3)), tmp_path / 'stats.pth')
    stats = load_statistics(str(tmp_path / 'stats.pth'), dims=3)
    assert stats['mu'].dtype == stats['sigma'].dtype == np.float64
    assert np.array_equal(stats['mu'], [0., 1., 2.]) and np.array_equal(stats['sigma'], np.eye(3))
    torch.save(dict(mean=torch.zeros(3)), tmp_path / 'other.pth')
    with pytest.raises(UsageError, match=r"other\.pth'?: no \['mu', 'sigma'\] array\(s\) "
                                         r"\(found \['mean'\]\)"):
        load_statistics(str(tmp_path / 'other.pth'))
    for name, mu, sigma in (('sigma', np.zeros(3), np.eye(2)), ('mu', np.zeros((3, 1)), np.eye(3))):
        np.savez(tmp_path / f'{name}.npz', mu=mu, sigma=sigma)
        with pytest.raises(UsageError, match=rf'{name}\.npz.*: mu \(.*\) and sigma \(.*\) do not match'):
            load_statistics(str(tmp_path / f'{name}.npz'))
    with pytest.raises(UsageError, match=r"stats\.pth.*statistics of 3-d features, but the FID "
                                         r"features here are 2048-d"):
        load_statistics(str(tmp_path / 'stats.pth'), dims=2048)


class _Marker:
    """Unpickling it writes a file: an ``.npz`` of object arrays must never be unpickled."""
    path = None

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_an_npz_of_pickled_objects_is_not_unpickled(tmp_path):
    marker = _Marker()
    marker.path = str(tmp_path / 'ran')
    np.savez(tmp_path / 'objects.npz', mu=np.array([marker], dtype=object), sigma=np.eye(1))
    with pytest.raises((UsageError, ValueError)):
        load_statistics(str(tmp_path / 'objects.npz'))
    assert not (tmp_path / 'ran').exists()


def test_fid_from_statistics_computes_in_float64(capsys):
    """Statistics in float32 give the FID of the same values in float64, printing nothing."""
    from addp_mm.evaluation.fid import fid_from_statistics
    require('torch_fidelity', 'torch-fidelity computes FID / IS')
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 6)), rng.standard_normal((200, 6)) + 0.3
    stats = [dict(mu=x.mean(0), sigma=np.cov(x, rowvar=False)) for x in (a, b)]
    low = [{k: v.astype(np.float32) for k, v in s.items()} for s in stats]
    exact = fid_from_statistics(*[{k: v.astype(np.float32).astype(np.float64)
                                   for k, v in s.items()} for s in stats])
    assert fid_from_statistics(*low) == exact and exact > 0.1
    assert capsys.readouterr().out == ''
    with pytest.raises(UsageError, match=r'feature sizes differ: \(6,\) vs \(5,\)'):
        fid_from_statistics(stats[0], dict(mu=np.zeros(5), sigma=np.eye(5)))


def test_what_torch_fidelity_is_given(monkeypatch):
    from addp_mm.evaluation.fid import FEATURE_FID, FEATURE_ISC, _fidelity_kwargs
    common = dict(feature_extractor='x', batch_size=7, verbose=True, cache=False,
                  save_cpu_ram=False, feature_layer_fid=FEATURE_FID, feature_layer_isc=FEATURE_ISC)
    assert _fidelity_kwargs('x', None, 7, 'cpu', True, False) == dict(common, cuda=False)
    assert _fidelity_kwargs('x', 'w.pth', 7, 'cuda:1', True, False) == dict(
        common, cuda=True, feature_extractor_weights_path='w.pth')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert _fidelity_kwargs('x', None, 7, None, True, False)['cuda'] is True
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert _fidelity_kwargs('x', None, 7, None, True, False)['cuda'] is False


def test_feature_extractor_weights_are_checked(tmp_path):
    from addp_mm.evaluation.fid import INCEPTION, _check_weights
    with pytest.raises(FileNotFoundError, match='Inception weights: no path was given'):
        _check_weights(INCEPTION, None)
    with pytest.raises(FileNotFoundError, match=r'Inception weights.*nope\.pth'):
        _check_weights(INCEPTION, str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match=r'feature extractor weights.*other\.pth'):
        _check_weights('another-extractor', str(tmp_path / 'other.pth'))
    _check_weights('another-extractor', None)  # its own weights: nothing to check


def test_without_torch_fidelity_the_message_names_the_pin(monkeypatch):
    import builtins

    from addp_mm.evaluation.fid import require_torch_fidelity
    real_import = builtins.__import__

    def no_fidelity(name, *args, **kwargs):
        if name == 'torch_fidelity':
            raise ImportError('No module named torch_fidelity')
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_fidelity)
    with pytest.raises(ImportError, match=r'^FID/IS need torch-fidelity \(requirements\.txt pins '
                                          r'torch-fidelity==0\.4\.0; tools/install\.sh installs it\)$'):
        require_torch_fidelity()


def test_images_are_rgb_and_a_size_mismatch_names_both_files(tmp_path):
    Image.fromarray(np.full((6, 5), 7, np.uint8)).save(tmp_path / 'a.png')  # grey, 5 wide, 6 high
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / 'b.png')
    files = ImageFiles([str(tmp_path / 'a.png'), str(tmp_path / 'b.png')])
    first = files[0]
    assert first.shape == (3, 6, 5) and bool((first == 7).all())
    with pytest.raises(UsageError, match=r'b\.png is 5x4 but \S+a\.png is 5x6: images of '
                                         r'different sizes cannot be batched\. Resize the '
                                         r'reference images, e\.g\. tools/fid_is\.py --ref-resize'):
        files[1]
    (tmp_path / 'empty' / 'sub').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no images \(.*\.png.*\) in '\S+empty' \(sub-folders "
                                                r'are not searched\)$'):
        list_images(str(tmp_path / 'empty'))
