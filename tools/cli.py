"""What every Python tool in tools/ shares before its heavy imports (torch, the OpenMMLab stack).

- ``--help`` stays fast: a tool builds its parser with this module and ``argparse`` only.
- A user's mistake (a missing config, data folder, annotation file or checkpoint, a GPU-only setting
  on a CPU) is one line on stderr, ``<tool>: error: <what is missing>. <what to do>``, and exit
  status 2; ``--debug`` shows the traceback instead. A mistake is ``addp_mm.errors.UsageError``
  (the library's errors of that kind subclass it, ``MissingFileError`` too) or a missing file;
  anything else is a bug and keeps its traceback.
- Known import-time noise from the pinned stack is silenced, narrowly (see ``quiet_imports``).
"""
import argparse
import contextlib
import functools
import importlib.util
import io
import os
import os.path as osp
import sys
import warnings

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


def quiet_imports() -> None:
    """Silence what the pinned stack prints that says nothing to our users: setuptools'
    ``pkg_resources is deprecated`` (mmengine 0.10.7 imports ``pkg_resources``) and the four
    progress lines pycocotools prints each time it reads an annotation file or a result list
    (three or four times in a detector's run). mmengine's own deprecation notices stay in the log
    file (``addp_mm.engine.runner_factory``)."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
    _quiet_pycocotools()


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


def run_tool(main, argv=None) -> None:
    """Run ``main(argv)`` and exit: user mistakes (``UsageError``, a missing file) as one line,
    everything else with its traceback. ``--debug`` anywhere on the command line shows
    tracebacks for user mistakes too."""
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
    sys.exit(result if isinstance(result, int) else 0)
