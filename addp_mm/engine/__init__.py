from .hooks import GenerationVisHook
from .optimizers import LayerDecayOptimWrapperConstructor
from .runner import ADDPPretrainRunner, check_frozen_checkpoints

__all__ = ['LayerDecayOptimWrapperConstructor', 'ADDPPretrainRunner', 'check_frozen_checkpoints',
           'GenerationVisHook']
