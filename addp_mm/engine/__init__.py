from .hooks import GenerationVisHook, ResumableCheckpointHook
from .optimizers import (LayerDecayOptimWrapperConstructor, NonFiniteGuardAmpOptimWrapper,
                         NonFiniteGuardOptimWrapper, NonFiniteLossError)
from .runner import ADDPPretrainRunner, check_frozen_checkpoints

__all__ = ['LayerDecayOptimWrapperConstructor', 'NonFiniteGuardOptimWrapper', 'NonFiniteGuardAmpOptimWrapper',
           'NonFiniteLossError', 'ADDPPretrainRunner', 'check_frozen_checkpoints',
           'GenerationVisHook', 'ResumableCheckpointHook']
