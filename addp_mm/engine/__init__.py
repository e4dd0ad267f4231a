"""Training machinery: ``ADDPPretrainRunner``, the hooks (``ExportPartHook``,
``GenerationVisHook``, ``ResumableCheckpointHook``, ``TF32Hook``), the optimizer wrappers that
agree across ranks on a non-finite loss and the layer-decay constructor (``optimizers``), the
runner mixin that converts and checks every checkpoint load (``CheckedCheckpointLoad``), and what
``tools/train.py`` / ``tools/test.py`` share: the config as they read and edit it (``config``),
the checks before anything slow starts (``preflight``), building the runner
(``runner_factory``) and the test-time outputs (``test_outputs``)."""
from .checked_checkpoint_load import CheckedCheckpointLoad
from .hooks import ExportPartHook, GenerationVisHook, ResumableCheckpointHook, TF32Hook
from .optimizers import (LayerDecayOptimWrapperConstructor, NonFiniteGuardAmpOptimWrapper,
                         NonFiniteGuardOptimWrapper, NonFiniteLossError)
from .runner import ADDPPretrainRunner, check_frozen_checkpoints

__all__ = ['LayerDecayOptimWrapperConstructor', 'NonFiniteGuardOptimWrapper',
           'NonFiniteGuardAmpOptimWrapper', 'NonFiniteLossError', 'ADDPPretrainRunner',
           'check_frozen_checkpoints', 'ExportPartHook', 'GenerationVisHook',
           'ResumableCheckpointHook', 'TF32Hook', 'CheckedCheckpointLoad']
