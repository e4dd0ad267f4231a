"""Shared fixtures: the reference folder (skipped with a reason when absent, required under CI)."""
import os
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import addp_mm  # noqa: E402,F401  (registers everything)
from addp_mm.verify.core import default_reference_dir  # noqa: E402

torch.set_num_threads(2)


def require_reference_dir() -> str:
    """The reference folder, or skip (fail under CI=true) when it is absent."""
    path = default_reference_dir()
    if not osp.isfile(osp.join(path, 'README.md')):
        msg = (f'reference folder {path} not found (set ADDP_REFERENCE_DIR to a folder laid out '
               'like shared/reference)')
        if os.environ.get('CI', '').lower() == 'true':
            pytest.fail(msg + ': under CI the reference checks must run')
        pytest.skip(msg)
    return path


@pytest.fixture(scope='session')
def reference_dir() -> str:
    return require_reference_dir()
