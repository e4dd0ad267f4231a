"""Training machinery: ``ADDPPretrainRunner``, the hooks (``ExportPartHook``,
``GenerationVisHook``, ``ResumableCheckpointHook``, ``TF32Hook``), the optimizer wrappers that
agree across ranks on a non-finite loss (``NonFiniteGuardOptimWrapper``,
``NonFiniteGuardAmpOptimWrapper``), the layer-decay optimizer constructor, the runner mixin that
converts and checks every checkpoint load (``CheckedCheckpointLoad``), and ``launch`` (config
loading, work dir, launcher and runner setup shared by ``tools/train.py`` and ``tools/test.py``)."""
from .checked_checkpoint_load import CheckedCheckpointLoad
from .hooks import ExportPartHook, GenerationVisHook, ResumableCheckpointHook, TF32Hook
from .optimizers import (LayerDecayOptimWrapperConstructor, NonFiniteGuardAmpOptimWrapper,
                         NonFiniteGuardOptimWrapper, NonFiniteLossError)
from .runner import ADDPPretrainRunner, check_frozen_checkpoints

__all__ = ['LayerDecayOptimWrapperConstructor', 'NonFiniteGuardOptimWrapper',
           'NonFiniteGuardAmpOptimWrapper', 'NonFiniteLossError', 'ADDPPretrainRunner',
           'check_frozen_checkpoints', 'ExportPartHook', 'GenerationVisHook',
           'ResumableCheckpointHook', 'TF32Hook', 'CheckedCheckpointLoad']
