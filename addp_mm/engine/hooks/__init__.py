"""Training hooks: ``GenerationVisHook`` (sample grids while pretraining),
``NonFiniteLossHook`` (stop a full-precision run at a non-finite loss) and ``TF32Hook`` (TF32
matmuls off for a run, as the release's pretraining)."""
from .generation_vis_hook import GenerationVisHook
from .non_finite_loss_hook import NonFiniteLossHook
from .tf32_hook import TF32Hook

__all__ = ['GenerationVisHook', 'NonFiniteLossHook', 'TF32Hook']
