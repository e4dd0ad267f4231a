"""Shared fixtures and helpers: the reference folder (skipped with a reason when absent, required
under CI), :func:`require` for optional imports (skipped locally, a failure under CI=true),
:func:`run_command` for every subprocess a test starts (a generous timeout that reports what was
running), :func:`tool_in_process` for a tool run by its ``main`` in the test's process (as a new
process would run it: :func:`fresh_mmengine_instances`), :func:`serving` for a server a test starts
(always stopped), :func:`free_port`, and the small demo data (:func:`demo_cwd`).

Under pytest-xdist (the suite runs on two workers, ``setup.cfg``) each worker uses one torch
thread and so do the processes it starts; the slow tests are scheduled first."""
import contextlib
import importlib
import os
import os.path as osp
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
# the checkout (addp_mm without installing) and tools/ are importable: the tests reach the tools'
# modules (cli, the tools' main functions, demo_data, verification, benchmark_release_path) by
# name, here and nowhere else
for path in (TOOLS, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)


def tool(name: str):
    """The module of ``tools/NAME.py`` (its ``main`` runs a tool in this process)."""
    return importlib.import_module(name)


@contextlib.contextmanager
def fresh_mmengine_instances():
    """mmengine's global instances (default scope, message hub, loggers, visualizers) as a new
    process has them, none, until the block ends; the ones made inside are dropped then."""
    from mmengine.utils import ManagerMixin

    def classes(cls):
        yield cls
        for sub in cls.__subclasses__():
            yield from classes(sub)
    saved = {cls: cls._instance_dict for cls in set(classes(ManagerMixin))}
    try:
        for cls in saved:
            cls._instance_dict = type(saved[cls])()
        yield
    finally:
        for cls in set(classes(ManagerMixin)):
            cls._instance_dict = saved.get(cls, type(cls._instance_dict)())


def tool_in_process(name: str, args, cwd):
    """``python tools/NAME.py ARGS`` as the tool's ``main`` in this process, run in ``cwd``
    (seconds sooner than a new process: for runs whose checks need no process of their own).

    The run starts, as a new process would, without mmengine's global instances (default scope,
    message hub, loggers, visualizers), and the ones it makes are dropped afterwards: a runner
    finds its visualizer by its experiment name (the config's name and the second it started),
    and an earlier run's of the same name would be taken for it. The random states and the
    deterministic-algorithms switch a run sets (``randomness`` in a config) are put back too. It
    runs on one torch thread, as the processes the tests start do (``OMP_NUM_THREADS=1``): a run
    here then computes bit for bit what the same command computes in a process of its own."""
    import random

    import numpy as np
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled(),
                     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    here, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(cwd)
    torch.set_num_threads(1)
    try:
        with fresh_mmengine_instances():
            return tool(name).main([str(a) for a in args])
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic[2:]


import addp_mm  # noqa: E402,F401  (registers everything)

# one thread per xdist worker (two workers share the two cores); the tools the tests start run one
# thread too, through OMP_NUM_THREADS (so they never choose their own: cli.choose_cpu_threads)
WORKER = os.environ.get('PYTEST_XDIST_WORKER')
os.environ['OMP_NUM_THREADS'] = '1'
torch.set_num_threads(1 if WORKER else 2)

# a subprocess's limit: a tool run of a minute here took up to 15 minutes on a loaded machine
SUBPROCESS_TIMEOUT = 1200


def run_command(cmd: List[str], cwd: str = ROOT, env: Optional[Dict[str, str]] = None,
                timeout: float = SUBPROCESS_TIMEOUT, what: Optional[str] = None,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd`` (``python`` as its first word means this interpreter), capturing its output.
    Past ``timeout`` seconds the test fails saying what was running and the last output; with
    ``check`` a non-zero exit fails with the tail of stdout and stderr."""
    cmd = [sys.executable if c == 'python' and i == 0 else str(c) for i, c in enumerate(cmd)]
    what = what or ' '.join(osp.basename(c) if osp.isabs(c) else c for c in cmd[:3])
    try:
        proc = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        def text(x):
            return x.decode(errors='replace') if isinstance(x, bytes) else (x or '')
        pytest.fail(f'{what} ran past {timeout:.0f} s (killed); last output:\n'
                    f'{text(e.stdout)[-2000:]}\n{text(e.stderr)[-2000:]}', pytrace=False)
    if check and proc.returncode != 0:
        pytest.fail(f'{what} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n'
                    f'{proc.stderr[-3000:]}', pytrace=False)
    return proc


@contextlib.contextmanager
def serving(cmd: List[str], url: str, log_path, cwd: str = ROOT,
            env: Optional[Dict[str, str]] = None, timeout: float = 180):
    """Start ``cmd`` (``python`` first means this interpreter) in the background, its output in
    the file ``log_path``, and wait until ``url`` answers (at most ``timeout`` s: past it, or when
    the process ends first, the test fails with the log's tail); yield the process. It is always
    stopped at the end (terminated, killed after 10 s)."""
    cmd = [sys.executable if c == 'python' and i == 0 else str(c) for i, c in enumerate(cmd)]
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                direct.open(url, timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                state = (f'exited with {proc.returncode}' if proc.poll() is not None
                         else f'did not answer {url} within {timeout:.0f} s')
                tail = open(log_path, errors='replace').read()[-3000:]
                pytest.fail(f'{" ".join(cmd[1:3])} {state}; its output:\n{tail}', pytrace=False)
            time.sleep(0.25)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now (for torchrun, servers)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(config, items):
    """The slow tests first (stable order otherwise). xdist hands the tests out in this order, one
    (or one ``xdist_group``) at a time to the worker that needs one (``--dist loadgroup
    --no-loadscope-reorder``, setup.cfg), so that no long test starts last; a module whose tests
    share an expensive module fixture is one group, so that the fixture runs once."""
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


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


@pytest.fixture
def backbone_reference_rows_only(monkeypatch):
    """``verification.run_checks`` (what tools/verify_reference.py and gpu_check's reference part
    run) computes only the backbone's rows, the encoder's and the released fine-tuning
    classifier's: for tests of what a tool does with the rows (every row is computed, once, by
    tests/test_verify_reference.py)."""
    import verification
    from verification.core import ReferenceDir

    def backbone_rows(path, num_threads=1):
        ref = ReferenceDir(path)
        return [r for check in (verification.backbone.encoder_rows,
                                verification.backbone.finetune_rows) for r in check(ref)]
    monkeypatch.setattr(verification, 'run_checks', backbone_rows)


@pytest.fixture(scope='session')
def demo_cwd(tmp_path_factory):
    """A working folder holding small demo data (``data/demo/{coco,ade,imagenet,unlabeled}``:
    8 train / 4 val images each, 4 + 5 per ImageNet class, 8 unlabeled of 96 px), laid out as
    the demo configs expect relative to the folder a tool runs in. Made once per session (per
    worker under pytest-xdist); tests write their work dirs under their own names in it."""
    from demo_data import make_all
    cwd = tmp_path_factory.mktemp('demo_cwd')
    make_all(str(cwd / 'data' / 'demo'), seed=0, num_train=8, num_val=4, imagenet_train=4,
             imagenet_val=5, num_unlabeled=8, unlabeled_size=96,
             parts=('coco', 'ade', 'imagenet', 'unlabeled'))
    return cwd
