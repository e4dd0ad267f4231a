from .resumable_checkpoint_hook import ResumableCheckpointHook
from .sample_grid_hook import GenerationVisHook

__all__ = ['GenerationVisHook', 'ResumableCheckpointHook']
