from .hooks import GenerationVisHook, TF32Hook
from .optimizers import LayerDecayOptimWrapperConstructor
from .runner import ADDPPretrainRunner, check_frozen_checkpoints

__all__ = ['LayerDecayOptimWrapperConstructor', 'ADDPPretrainRunner', 'check_frozen_checkpoints',
           'GenerationVisHook', 'TF32Hook']
