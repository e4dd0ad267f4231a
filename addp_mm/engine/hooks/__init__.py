"""Training hooks: ``ExportPartHook`` (a trained part as the file its loader reads),
``GenerationVisHook`` (sample grids while pretraining),
``ResumableCheckpointHook`` (atomic checkpoints with every rank's RNG states, for exact resume) and
``TF32Hook`` (TF32 matmuls off for a run, as the release's pretraining)."""
from .export_part_hook import ExportPartHook
from .generation_vis_hook import GenerationVisHook
from .resumable_checkpoint_hook import ResumableCheckpointHook
from .tf32_hook import TF32Hook

__all__ = ['ExportPartHook', 'GenerationVisHook', 'ResumableCheckpointHook', 'TF32Hook']
