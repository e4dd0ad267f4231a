"""Where the files that nothing downloads come from: one table for every message that names one.

Standard library only: the tools read it before the heavy imports (``tools/cli.py``).
"""
import os.path as osp
from typing import Optional

__all__ = ['WEIGHT_SOURCES', 'RELEASE_FILES', 'source_of', 'where_from']

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


def where_from(path) -> str:
    """`` It is a release file: get it from ...`` for a released file's name, else ``''``."""
    where = source_of(path)
    return (f' It is a release file: get it from {where}; nothing is downloaded.' if where else '')
