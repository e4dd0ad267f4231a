"""Optimizer wrappers and constructors: ``LayerDecayOptimWrapperConstructor`` (layer-wise lr
decay), ``NonFiniteGuardOptimWrapper`` / ``NonFiniteGuardAmpOptimWrapper`` (every rank takes the
same decision on a non-finite loss) and ``CPUAutocastOptimWrapper`` (bf16 autocast on CPUs that
run it natively)."""
from .cpu_autocast_optim_wrapper import CPUAutocastOptimWrapper
from .layer_decay import LayerDecayOptimWrapperConstructor
from .non_finite_guard import (NonFiniteGuardAmpOptimWrapper, NonFiniteGuardMixin, NonFiniteGuardOptimWrapper,
                               NonFiniteLossError)

__all__ = ['LayerDecayOptimWrapperConstructor', 'NonFiniteGuardOptimWrapper',
           'NonFiniteGuardAmpOptimWrapper', 'NonFiniteGuardMixin', 'NonFiniteLossError',
           'CPUAutocastOptimWrapper']
