"""Under CI=true nothing skips because an optional import is missing."""
import glob
import os.path as osp
import re

import pytest

from conftest import require

TESTS = osp.dirname(osp.abspath(__file__))


def test_missing_module_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv('CI', raising=False)
    with pytest.raises(pytest.skip.Exception, match='no_such_module_for_addp'):
        require('no_such_module_for_addp')
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match=r'no_such_module_for_addp.*CI=true'):
        require('no_such_module_for_addp')
    assert require('json').dumps([1]) == '[1]'


def test_no_test_uses_importorskip():
    """pytest.importorskip would skip under CI too: the tests use conftest.require."""
    offenders = [osp.basename(p) for p in glob.glob(osp.join(TESTS, 'test_*.py'))
                 if re.search(r'importorskip\(', open(p).read()) and not p.endswith('test_ci_requirements.py')]
    assert not offenders
