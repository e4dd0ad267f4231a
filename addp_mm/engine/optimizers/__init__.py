from .cpu_autocast_optim_wrapper import CPUAutocastOptimWrapper
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor', 'CPUAutocastOptimWrapper']
