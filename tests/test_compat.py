"""addp_mm.compat: the supported versions are checked at import with a one-line refusal, and the
fallbacks for older torch (the restricted unpickler, the private hook spellings) do what the
features they stand in for do; exercised here on the pinned torch by forcing the fallback."""
import argparse
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from addp_mm import compat
from addp_mm.checkpoint import UnsafeCheckpointError, read_checkpoint


@pytest.mark.parametrize('found, message', [
    (dict(torch='2.0.1'), 'addp_mm needs torch >= 2.1, < 2.15; found torch 2.0.1: install'),
    (dict(torch='2.15.0'), 'found torch 2.15.0'),
    (dict(mmcv='2.3.0'), 'addp_mm needs mmcv >= 2.0.0, < 2.3; found mmcv 2.3.0: install mmcv 2.1.0'),
    (dict(mmengine='0.9.1'), 'found mmengine 0.9.1: pip install mmengine==0.10.7'),
])
def test_an_unsupported_version_is_refused_in_one_line(found, message):
    versions = dict(torch='2.14.1+cu130', mmengine='0.10.7', mmcv='2.1.0')
    versions.update(found)
    with pytest.raises(ImportError, match=message) as info:
        compat.check_versions(versions)
    assert '\n' not in str(info.value)


def test_version_edges_pre_releases_and_a_missing_package_before_a_bad_one():
    assert compat._release('2.5.0rc1') == (2, 5, 0) and compat._release('2.1.dev2024') == (2, 1)
    assert compat._release('2.14.1+cu130') == (2, 14, 1)
    with pytest.raises(ImportError, match='found torch 2.15:'):
        compat.check_versions(dict(torch='2.15'))  # the upper bound itself is out
    with pytest.raises(ImportError, match='found torch 2.15.0rc1'):
        compat.check_versions(dict(torch='2.15.0rc1'))
    with pytest.raises(ImportError, match='found mmcv 2.3.0'):  # torch, mmengine not installed
        compat.check_versions(dict(mmcv='2.3.0'))


def test_mmcv_is_found_as_mmcv_lite_too(monkeypatch):
    from importlib import metadata
    installed = {'mmcv-lite': '2.2.0', 'torch-lite': '9.9'}

    def version(dist):
        if dist not in installed:
            raise metadata.PackageNotFoundError(dist)
        return installed[dist]
    monkeypatch.setattr(metadata, 'version', version)
    assert compat.installed_version('mmcv') == '2.2.0'
    assert compat.installed_version('torch') is None  # only mmcv has a -lite
    installed['mmcv'] = '2.1.0'
    assert compat.installed_version('mmcv') == '2.1.0'


def test_restricted_unpickler_on_an_old_torch_list_and_with_load_arguments(monkeypatch):
    """torch < 2.4's list lacks ``_codecs.encode`` (NumPy's pickles need it): the module adds it.
    ``load`` passes its keyword arguments on (``encoding`` of protocol 2 strings)."""
    monkeypatch.setattr(compat, '_torch_allowed_globals', dict)
    module = compat.restricted_pickle_module([])
    assert module.load(io.BytesIO(b'\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00'
                                  b'\x00latin1\x86R.')) == b'abc'
    py2_str = b'\x80\x02U\x03abc.'
    assert module.load(io.BytesIO(py2_str)) == 'abc'
    assert module.load(io.BytesIO(py2_str), encoding='bytes') == b'abc'


def test_supported_versions_and_missing_packages_pass():
    compat.check_versions(dict(torch='2.1.2', mmengine='0.10.7', mmcv='2.2.0'))  # the 2.1 stack
    compat.check_versions(dict(torch='2.14.1+cu130', mmengine='0.10.4', mmcv=None))
    compat.check_versions()  # this environment


class _Evil:
    def __reduce__(self):
        return (os.system, ('echo unpickled-code',))


def _checkpoint(tmp_path):
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    state = dict(state_dict={'w': torch.arange(4.)}, meta=dict(args=argparse.Namespace(lr=0.1),
                 hub=buf, arr=np.arange(3), scalar=np.float64(2.5)))
    path = tmp_path / 'ok.pth'
    torch.save(state, path)
    return path


def test_restricted_unpickler_loads_our_files_and_refuses_code(tmp_path, monkeypatch):
    """The torch < 2.4 path (no add_safe_globals): forced here, it reads what the allow-list
    allows and refuses any other global by name, as torch's weights-only load does."""
    from addp_mm.checkpoint import safe_globals
    module = compat.restricted_pickle_module(safe_globals())
    path = _checkpoint(tmp_path)
    loaded = torch.load(path, weights_only=False, pickle_module=module)
    assert torch.equal(loaded['state_dict']['w'], torch.arange(4.))
    assert loaded['meta']['args'].lr == 0.1 and loaded['meta']['hub'].mean() == 1.5
    evil = tmp_path / 'evil.pth'
    torch.save({'x': _Evil()}, evil)
    with pytest.raises(pickle.UnpicklingError, match='posix.system|os.system'):
        torch.load(evil, weights_only=False, pickle_module=module)
    # read_checkpoint takes that path when torch has no add_safe_globals
    monkeypatch.setattr('addp_mm.checkpoint.io.HAS_SAFE_GLOBALS', False)
    assert read_checkpoint(str(path))['meta']['args'].lr == 0.1
    with pytest.raises(UnsafeCheckpointError, match='system'):
        read_checkpoint(str(evil))


def test_private_hook_spellings_behave_as_the_public_ones():
    class Old(nn.Linear):  # a torch without the public names
        register_load_state_dict_pre_hook = None
        register_state_dict_post_hook = None

    seen = []

    def drop_bias(mod, state, prefix, meta):  # edits in place, returns None (the public contract)
        del state[prefix + 'bias']

    for cls in (nn.Linear, Old):
        m = cls(2, 2)
        compat.register_load_state_dict_pre_hook(
            m, lambda mod, state, prefix, *a: seen.append((type(mod).__name__, sorted(state))))
        compat.register_state_dict_post_hook(m, drop_bias)
        assert list(m.state_dict()) == ['weight']
        m.load_state_dict({'weight': torch.zeros(2, 2), 'bias': torch.zeros(2)})
    assert seen == [('Linear', ['bias', 'weight']), ('Old', ['bias', 'weight'])]


def test_the_public_hook_names_are_used_where_torch_has_them():
    calls = []

    class New(nn.Linear):
        def register_load_state_dict_pre_hook(self, hook):
            calls.append('load')

        def register_state_dict_post_hook(self, hook):
            calls.append('save')

    m = New(2, 2)
    compat.register_load_state_dict_pre_hook(m, print)
    compat.register_state_dict_post_hook(m, print)
    assert calls == ['load', 'save']


def test_autocast_probes_follow_the_context():
    assert not compat.autocast_enabled('cpu')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.autocast_enabled('cpu') and compat.autocast_dtype('cpu') == torch.bfloat16
    assert compat.autocast_available('cpu') and not compat.is_compiling()


BARE = '''
import sys, importlib.abc
class NoMM(importlib.abc.MetaPathFinder):  # a machine with torch, timm and mmengine only
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, NoMM())
sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tools']
import addp_mm, gpu_check
assert not addp_mm.compat.HAS_MMCV and 'mmcv' not in sys.modules
sys.exit(gpu_check.main(['--cpu', '--parts', 'pretrain', 'generation', '--out-dir', sys.argv[2]]))
'''


@pytest.mark.slow
def test_models_pretraining_and_generation_run_without_mmcv(tmp_path):
    """A bare GPU machine (torch, timm, mmengine; no mmcv, no toolbox): addp_mm imports and the
    GPU check's pretraining and generation parts run (simulated by refusing the mm imports)."""
    import json
    import sys

    from conftest import ROOT, run_command
    run_command([sys.executable, '-c', BARE, ROOT, str(tmp_path)])
    parts = json.load(open(tmp_path / 'gpu_check.json'))['parts']
    assert parts['pretrain']['status'] == 'passed' and parts['generation']['status'] == 'passed'
    assert json.load(open(tmp_path / 'gpu_check.json'))['machine']['mmcv'] is None


@pytest.mark.parametrize('spelling, full', [
    (b'c__builtin__\nset\n', None),  # protocol 2's name of builtins.set: allowed
    (b'c__builtin__\neval\n', 'builtins.eval'),  # the module renamed
    (b'c__builtin__\nreduce\n', 'functools.reduce'),  # module and name renamed
    (b'cposix\nsystem\n', 'posix.system'),
])
def test_restricted_unpickler_reads_protocol_2_spellings_as_python_3_names(spelling, full):
    """Globals are judged by their Python 3 names, as torch's weights-only load judges them."""
    from addp_mm.checkpoint import safe_globals
    module = compat.restricted_pickle_module(safe_globals())
    assert module.UnpicklingError is pickle.UnpicklingError  # what callers catch
    data = b'\x80\x02' + spelling + b']K\x01a\x85R.'  # GLOBAL, [1], TUPLE1, REDUCE: f([1])
    if full is None:
        assert module.load(io.BytesIO(data)) == {1}
    else:
        with pytest.raises(module.UnpicklingError, match=rf'Unsupported global: GLOBAL {full}$'):
            module.load(io.BytesIO(data))
