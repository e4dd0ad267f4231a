"""Generation to files, as used by ``tools/generate.py``: build the model from a config and a
checkpoint, split the images over ranks, sample, write PNGs and a grid. Inference with the
toolboxes' own inferencers, as used by ``tools/infer.py``."""
from .generate import (GRID_NAME, IMAGE_NAME, barrier, build_generation_model, close_launcher,
                       generate_to_dir, image_grid, init_launcher, rank_range, write_grid)
from .inference import INFERENCERS, init_inferencer, run_inference

__all__ = ['build_generation_model', 'rank_range', 'generate_to_dir', 'image_grid', 'write_grid',
           'init_launcher', 'barrier', 'close_launcher', 'IMAGE_NAME', 'GRID_NAME',
           'INFERENCERS', 'init_inferencer', 'run_inference']
