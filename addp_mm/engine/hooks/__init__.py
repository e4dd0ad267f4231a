from .sample_grid_hook import GenerationVisHook

__all__ = ['GenerationVisHook']
