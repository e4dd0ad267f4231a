"""High-level entry points used by the tools (kept out of ``import addp_mm``)."""
from .generate import (GRID_NAME, IMAGE_NAME, barrier, build_generation_model, build_sampler,
                       close_launcher, generate_to_dir, init_launcher, make_grid, rank_range,
                       save_png, write_grid)

__all__ = ['build_generation_model', 'build_sampler', 'rank_range', 'generate_to_dir', 'make_grid',
           'write_grid', 'save_png', 'init_launcher', 'barrier', 'close_launcher', 'IMAGE_NAME',
           'GRID_NAME']
