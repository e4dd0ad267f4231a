"""What every Python tool in tools/ shares before its heavy imports (torch, the OpenMMLab stack).

- ``--help`` stays fast: a tool builds its parser with this module and ``argparse`` only.
- A user's mistake (a missing config, data folder, annotation file or checkpoint, a GPU-only setting
  on a CPU) is one line on stderr, ``<tool>: error: <what is missing>. <what to do>``, and exit
  status 2; ``--debug`` shows the traceback instead. A mistake is ``addp_mm.errors.UsageError``
  (the library's errors of that kind subclass it, ``MissingFileError`` too) or a missing file;
  anything else is a bug and keeps its traceback.
- Before its heavy imports a tool chooses torch's CPU threads and silences known noise of the
  pinned stack, narrowly (``before_heavy_imports``).
"""
import argparse
import contextlib
import functools
import importlib.util
import io
import os
import os.path as osp
import sys
import time
import warnings
from typing import Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
USER_ERROR_EXIT = 2


def light_import(name: str):
    """A module of ``addp_mm`` that uses the standard library only (``addp_mm.errors``,
    ``addp_mm.checkpoint.sources``), loaded without importing the package (which imports torch).
    It is registered under its own name, so the package uses this very module once it is
    imported: one exception class, one table."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, *name.split('.')) + '.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


UsageError = light_import('addp_mm.errors').UsageError
_sources = light_import('addp_mm.checkpoint.sources')
_renamed = light_import('addp_mm.renamed_configs')


def before_heavy_imports(threads: bool = True) -> None:
    """What a tool does once its arguments are parsed, before it imports torch: choose the CPU
    threads (:func:`choose_cpu_threads`, unless ``threads`` is False) and silence what the pinned
    stack prints that says nothing to our users: setuptools' ``pkg_resources is deprecated``
    (mmengine 0.10.7 imports ``pkg_resources``) and the four progress lines pycocotools prints each
    time it reads an annotation file or a result list (three or four times in a detector's run).
    mmengine's own deprecation notices stay in the log file (``addp_mm.engine.runner_factory``)."""
    if threads:
        choose_cpu_threads()
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
    _quiet_pycocotools()


# how long the CPU load is sampled, and how much of a core other processes must keep busy to
# count as taking it
LOAD_SAMPLE_S = 0.3
BUSY_CORE = 0.6


def busy_cores(seconds: float = LOAD_SAMPLE_S) -> Optional[float]:
    """How many cores other processes keep busy now: the non-idle share of all CPUs in
    ``/proc/stat`` over ``seconds`` (this process sleeps meanwhile) times their number; ``None``
    where there is no ``/proc/stat``."""
    def sample():
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])
    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)


def choose_cpu_threads() -> Optional[int]:
    """torch's CPU threads for this process, chosen before torch is imported.

    torch starts a thread per core; where other processes keep some cores busy, its OpenMP
    threads spin waiting for each other on every operation and a training step runs much slower
    (docs/get_started.md, measured). Unless ``OMP_NUM_THREADS`` is set (by the user, a launcher or
    the tests), the cores other processes keep busy now are left to them: the rest, at least one,
    becomes ``OMP_NUM_THREADS``, said in one line when that is fewer than the cores. With two
    threads or more their waiting is passive (``OMP_WAIT_POLICY=PASSIVE`` unless set), which keeps
    a run close to its best when other work starts after it. Returns the number chosen
    (``None``: nothing changed)."""
    if 'OMP_NUM_THREADS' in os.environ or 'torch' in sys.modules:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    busy = busy_cores()
    if not cores or busy is None:
        return None
    taken = int(busy + 1 - BUSY_CORE)  # a core counts once others use BUSY_CORE of it
    threads = max(1, min(cores, cores - taken))
    os.environ['OMP_NUM_THREADS'] = str(threads)
    if threads > 1:
        os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    if threads < cores:
        print(f'note: other processes keep {busy:.1f} of the {cores} cores busy: using {threads} '
              f'CPU thread{"s" if threads > 1 else ""} (set OMP_NUM_THREADS to choose; '
              'docs/get_started.md)', file=sys.stderr)
    return threads


def _quiet_pycocotools() -> None:
    try:
        from pycocotools import coco
    except ImportError:
        return
    for name in ('__init__', 'loadRes'):
        method = getattr(coco.COCO, name)
        if getattr(method, 'quiet', False):
            continue

        def quiet(*args, _method=method, **kwargs):
            with contextlib.redirect_stdout(io.StringIO()):
                return _method(*args, **kwargs)
        quiet.quiet = True
        functools.update_wrapper(quiet, method)
        setattr(coco.COCO, name, quiet)


def add_debug_flag(parser) -> None:
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of one line')


def add_run_flags(parser, launchers=('none', 'pytorch', 'slurm'),
                  cfg_help: str = 'override config entries, e.g. train_cfg.max_epochs=3') -> None:
    """The flags every tool that runs a config shares: ``--cfg-options``, ``--launcher``,
    ``--local_rank`` (set by ``torch.distributed.launch``) and ``--debug``."""
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE', help=cfg_help)
    parser.add_argument('--launcher', choices=list(launchers), default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    add_debug_flag(parser)


def parse_run_args(parser, argv=None):
    """``parser.parse_args(argv)``, and ``LOCAL_RANK`` from ``--local_rank`` unless the launcher
    set it."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


# a missing file, said the one way (addp_mm.checkpoint.sources.require_file / missing_file)
require_file = _sources.require_file
missing_file = _sources.missing_file


def require_generation_checkpoint(path: str) -> None:
    """The CHECKPOINT of the generating tools (generate, edit, the demo page) exists, else the
    one-line ``FileNotFoundError`` that says which files they take."""
    require_file(path, 'checkpoint',
                 'Give a full checkpoint of your pretraining (work_dirs/<config name>/iter_N.pth) '
                 'or addp-vit-*-16.pth (docs/user_guides/weights.md).')


def require_config(path: str) -> str:
    """The config file to read for ``path``: ``path`` itself, or the new name of a renamed
    config (with a note on stderr; ``addp_mm/renamed_configs.py``); else ``FileNotFoundError``."""
    new = None if osp.isfile(path) else _renamed.renamed_config(path)
    if new is not None and osp.isfile(new):
        print(f'note: {path} is now named {new}; the old name works for one more release '
              '(the work dir keeps the name given)', file=sys.stderr)
        return new
    require_file(path, 'config file',
                 'Give the path of a config, e.g. '
                 'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py.')
    return path


def is_user_mistake(error: BaseException) -> bool:
    """A :class:`UsageError` (the library's user-mistake errors subclass it) or a missing file."""
    return isinstance(error, (UsageError, FileNotFoundError, NotADirectoryError))


def run_tool(main, argv=None, exit_on_success: bool = True) -> None:
    """Run ``main(argv)`` and exit: user mistakes (``UsageError``, a missing file) as one line,
    everything else with its traceback. ``--debug`` anywhere on the command line shows
    tracebacks for user mistakes too. ``exit_on_success=False``: return after a ``main`` that
    raised nothing (a check that runs before a tool's heavy imports)."""
    argv = sys.argv[1:] if argv is None else argv
    prog = osp.basename(sys.argv[0])
    try:
        result = main(argv)
    except Exception as e:
        if '--debug' in argv or not is_user_mistake(e):
            raise
        message = ' '.join(str(e).split()) or type(e).__name__  # always one line
        print(f'{prog}: error: {message}', file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    if exit_on_success:
        sys.exit(result if isinstance(result, int) else 0)
