"""What every Python tool in tools/ shares before its heavy imports (torch, the OpenMMLab stack).

- ``--help`` stays fast: a tool builds its parser with this module and ``argparse`` only.
- A user's mistake (a missing config, data folder, annotation file or checkpoint, a GPU-only setting
  on a CPU) is one line on stderr, ``<tool>: error: <what is missing>. <what to do>``, and exit
  status 2; ``--debug`` shows the traceback instead. Anything else is a bug and keeps its traceback.
- Known import-time noise from the pinned stack is silenced, narrowly (see ``quiet_imports``).
"""
import os
import os.path as osp
import sys
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
USER_ERROR_EXIT = 2

# Files that come from a release (nothing downloads them): a missing one gets a "where to get it"
# hint. Any other missing path (e.g. a mistyped work_dirs/.../iter_N.pth) is just "not found".
RELEASE_FILES = {
    'addp-vit-base-16.pth': 'the ADDP release (github.com/ChangyaoTian/ADDP)',
    'addp-vit-large-16.pth': 'the ADDP release (github.com/ChangyaoTian/ADDP)',
    'vqgan_jax_strongaug.ckpt': 'the MAGE release (github.com/LTH14/mage)',
    'mage-vitb-1600.pth': 'the MAGE release (github.com/LTH14/mage)',
    'mage-vitl-1600.pth': 'the MAGE release (github.com/LTH14/mage)',
    'weights-inception-2015-12-05-6726825d.pth':
        "torch-fidelity's releases (github.com/toshas/torch-fidelity)",
}


class UserError(Exception):
    """A mistake the user can fix; its message is the whole report (one line)."""


def quiet_imports() -> None:
    """Silence what the pinned stack prints on import that says nothing to our users:
    setuptools' ``pkg_resources is deprecated`` (mmengine 0.10.7 imports ``pkg_resources``)."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)


def add_debug_flag(parser) -> None:
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of one line')


def where_from(path: str) -> str:
    """`` Get it from ...`` for a release file name, else ``''``."""
    where = RELEASE_FILES.get(osp.basename(str(path)))
    return (f' It is a release file: get it from {where}, see the README "Weights" '
            '(nothing is downloaded).') if where else ''


def require_file(path, what: str, fix: str = '') -> None:
    """``FileNotFoundError`` (a user mistake for :func:`run_tool`) when ``path`` is not a file:
    ``<what> '<path>' not found``, then the release hint for a release file, else ``fix``."""
    if path is not None and osp.isfile(path):
        return
    if path is not None and osp.isdir(path):
        raise FileNotFoundError(f"{what} '{path}' is a folder, not a file")
    hint = where_from(path) or (f' {fix}' if fix else ' Check the path.')
    raise FileNotFoundError(f"{what} '{path}' not found (looked in {os.getcwd()}).{hint}")


def require_config(path: str) -> None:
    require_file(path, 'config file',
                 'Give the path of a config, e.g. configs/demo/mask-rcnn_addp-vit-demo_demo-coco.py.')


def is_user_mistake(error: BaseException) -> bool:
    """``UserError``, a missing file, or a library error marked ``is_user_mistake = True`` (e.g.
    ``addp_mm.engine.launch.UsageError``)."""
    return (isinstance(error, (UserError, FileNotFoundError, NotADirectoryError))
            or getattr(error, 'is_user_mistake', False) is True)


def run_tool(main, argv=None) -> None:
    """Run ``main(argv)`` and exit: user mistakes (``UserError``, a missing file) as one line,
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
