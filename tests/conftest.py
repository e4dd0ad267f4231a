"""Shared fixtures: the reference folder (skipped with a reason when absent, required under CI),
and :func:`require` for optional imports (skipped locally, a failure under CI=true)."""
import importlib
import os
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
# the checkout (addp_mm without installing) and tools/ (verification, demo_data) are importable
for path in (TOOLS, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

import addp_mm  # noqa: E402,F401  (registers everything)

torch.set_num_threads(2)


def on_ci() -> bool:
    """``CI=true``: nothing may skip."""
    return os.environ.get('CI', '').lower() == 'true'


def require(module: str, reason: str = ''):
    """``import module``; when it is missing, skip (module level too) or, under ``CI=true``, fail:
    CI has every dependency, so a missing one is an error there, never a silent skip."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        msg = f'{module} cannot be imported ({e})' + (f': {reason}' if reason else '')
        if on_ci():
            pytest.fail(msg + ' (CI=true: a missing dependency fails)', pytrace=False)
        pytest.skip(msg, allow_module_level=True)


def default_reference_dir() -> str:
    """``$ADDP_REFERENCE_DIR``, else ``<repo>/../shared/reference``."""
    return os.environ.get('ADDP_REFERENCE_DIR', osp.join(osp.dirname(ROOT), 'shared', 'reference'))


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


@pytest.fixture(scope='session')
def demo_cwd(tmp_path_factory):
    """A working folder holding small demo data (``data/demo/{coco,ade,imagenet,unlabeled}``:
    8 train / 4 val images each, 4 + 2 per ImageNet class, 8 unlabeled of 96 px), laid out as
    the demo configs expect relative to the folder a tool runs in. Made once per session (per
    worker under pytest-xdist); tests write their work dirs under their own names in it."""
    from demo_data import make_all
    cwd = tmp_path_factory.mktemp('demo_cwd')
    make_all(str(cwd / 'data' / 'demo'), seed=0, num_train=8, num_val=4, imagenet_train=4,
             imagenet_val=2, num_unlabeled=8, unlabeled_size=96,
             parts=('coco', 'ade', 'imagenet', 'unlabeled'))
    return cwd
