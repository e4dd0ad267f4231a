"""What the tools do, as functions: generation to files (``tools/generate.py``), editing images
(:mod:`.edit`, ``tools/edit.py``), inference with the toolboxes' own inferencers
(:mod:`.inference`, ``tools/infer.py``) and export (:mod:`.export`, ``tools/deploy``)."""
from . import edit
from .generate import (GRID_NAME, IMAGE_NAME, barrier, build_generation_model, close_launcher,
                       generate_to_dir, image_grid, init_launcher, rank_range, write_grid)
from .inference import INFERENCERS, init_inferencer, run_inference

__all__ = ['build_generation_model', 'rank_range', 'generate_to_dir', 'image_grid', 'write_grid',
           'init_launcher', 'barrier', 'close_launcher', 'IMAGE_NAME', 'GRID_NAME',
           'INFERENCERS', 'init_inferencer', 'run_inference', 'edit']
