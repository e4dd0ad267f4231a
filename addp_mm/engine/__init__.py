"""Training machinery: ``ADDPPretrainRunner``, the hooks (``GenerationVisHook``,
``NonFiniteLossHook``, ``TF32Hook``), the layer-decay optimizer constructor, and
``launch`` (config loading, work dir, launcher and runner setup shared by ``tools/train.py`` and
``tools/test.py``)."""
from .hooks import GenerationVisHook, NonFiniteLossHook, TF32Hook
from .optimizers import LayerDecayOptimWrapperConstructor
from .runner import ADDPPretrainRunner, check_frozen_checkpoints

__all__ = ['LayerDecayOptimWrapperConstructor', 'ADDPPretrainRunner', 'check_frozen_checkpoints',
           'GenerationVisHook', 'NonFiniteLossHook', 'TF32Hook']
