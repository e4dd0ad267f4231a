"""``LayerDecayOptimWrapperConstructor``: layer-wise lr decay, no decay on 1-d parameters."""
from .layer_decay import LayerDecayOptimWrapperConstructor
from .non_finite_guard import (NonFiniteGuardAmpOptimWrapper, NonFiniteGuardMixin, NonFiniteGuardOptimWrapper,
                               NonFiniteLossError)

__all__ = ['LayerDecayOptimWrapperConstructor', 'NonFiniteGuardOptimWrapper', 'NonFiniteGuardAmpOptimWrapper',
           'NonFiniteGuardMixin', 'NonFiniteLossError']
