"""Training hooks: ``GenerationVisHook`` (sample grids while pretraining) and
``NonFiniteLossHook`` (stop a full-precision run at a non-finite loss)."""
from .generation_vis_hook import GenerationVisHook
from .non_finite_loss_hook import NonFiniteLossHook

__all__ = ['GenerationVisHook', 'NonFiniteLossHook']
