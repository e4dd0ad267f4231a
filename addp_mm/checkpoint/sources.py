"""Where the files that nothing downloads come from: one table for every message that names one.

A missing file, whatever reads it (a tool's argument, a config key, a frozen part's checkpoint),
is said one way, by :func:`missing_file` / :func:`require_file`.

Standard library only: the tools read it before the heavy imports (``tools/cli.py``, which loads
``addp_mm.errors`` first).
"""
import os
import os.path as osp
from typing import Optional

from addp_mm.errors import MissingFileError, UsageError

__all__ = ['WEIGHT_SOURCES', 'RELEASE_FILES', 'source_of', 'missing_file', 'require_file']

# what a config key or a tool option reads -> where the file comes from
WEIGHT_SOURCES = {
    'addp': "the ADDP release (github.com/ChangyaoTian/ADDP): addp-vit-base-16.pth / "
            "addp-vit-large-16.pth (docs/user_guides/weights.md)",
    'vqgan': "the MAGE release (github.com/LTH14/mage): vqgan_jax_strongaug.ckpt; the released "
             "ADDP checkpoints and MAGE's mage-vit*-1600.pth also hold it under 'vqgan.' "
             "(docs/user_guides/weights.md)",
    'token_predictor': "the MAGE release (github.com/LTH14/mage): mage-vitb-1600.pth for ViT-B, "
                       "mage-vitl-1600.pth for ViT-L; a released ADDP checkpoint (token_predictor.*) "
                       "also works (docs/user_guides/weights.md)",
    'inception': "torch-fidelity's release assets (github.com/toshas/torch-fidelity, v0.2.0): "
                 "weights-inception-2015-12-05-6726825d.pth",
}

# the released files by name -> their WEIGHT_SOURCES key
RELEASE_FILES = {
    'addp-vit-base-16.pth': 'addp',
    'addp-vit-large-16.pth': 'addp',
    'vqgan_jax_strongaug.ckpt': 'vqgan',
    'mage-vitb-1600.pth': 'token_predictor',
    'mage-vitl-1600.pth': 'token_predictor',
    'weights-inception-2015-12-05-6726825d.pth': 'inception',
}


def source_of(path) -> Optional[str]:
    """Where a released file comes from (by its name), else ``None`` (a file of one's own)."""
    key = RELEASE_FILES.get(osp.basename(str(path)))
    return WEIGHT_SOURCES[key] if key else None


def missing_file(path, what: str, fix: str = '', source: Optional[str] = None) -> MissingFileError:
    """The error for a file that is not there: ``<what> '<path>' not found (looked in <cwd>).``
    then where it comes from (``source``, a key of :data:`WEIGHT_SOURCES`, or a released file's
    name), else ``fix``, else ``Check the path.``"""
    where = WEIGHT_SOURCES[source] if source else source_of(path)
    hint = (f'It comes from {where}; place it at that path (nothing is downloaded) or give another.'
            if where else fix or 'Check the path.')
    return MissingFileError(f"{what} '{os.fspath(path) if path is not None else None}' not found "
                            f'(looked in {os.getcwd()}). {hint}')


def require_file(path, what: str, fix: str = '', source: Optional[str] = None) -> None:
    """Nothing when ``path`` is a file; else :func:`missing_file`'s error (a folder given for a
    file: a :class:`UsageError` saying so)."""
    if path is not None and osp.isfile(path):
        return
    if path is not None and osp.isdir(path):
        raise UsageError(f"{what} '{os.fspath(path)}' is a folder, not a file")
    raise missing_file(path, what, fix, source)
