from .sample_grid_hook import GenerationVisHook
from .tf32_hook import TF32Hook

__all__ = ['GenerationVisHook', 'TF32Hook']
