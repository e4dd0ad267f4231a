"""``LayerDecayOptimWrapperConstructor``: layer-wise lr decay, no decay on 1-d parameters."""
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor']
