"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``.

Registered in mmengine's root registry, so mmdet, mmseg and mmpretrain configs all use it as
``optim_wrapper=dict(constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(
layer_decay_rate=0.65))``.
"""
from typing import Dict, List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """lr of a parameter at depth ``d`` of ``L`` = base lr x ``layer_decay_rate ** (L - 1 - d)``.

    The depth comes from the ``get_layer_depth(name, prefix)`` of the first module that has one
    (``ADDPViT``: embeddings 0, block i -> i + 1, the rest L - 1); parameters outside it get the
    full lr. ``paramwise_cfg``:

    - ``layer_decay_rate`` (float): the decay (1.0: none).
    - ``no_decay_names`` (tuple[str]): parameter-name fragments without weight decay (default: the
      position/class/mask tokens and relative-position tables); 1-d parameters (norms, biases)
      never get weight decay unless ``decay_1d=True``.
    Frozen parameters (``requires_grad=False``) are left out of the optimizer.
    """

    DEFAULT_NO_DECAY = ('pos_embed', 'cls_token', 'mask_token', 'rel_pos_h', 'rel_pos_w')

    def add_params(self, params: List[Dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        cfg = self.paramwise_cfg
        rate = float(cfg.get('layer_decay_rate', 1.0))
        no_decay = tuple(cfg.get('no_decay_names', self.DEFAULT_NO_DECAY))
        decay_1d = bool(cfg.get('decay_1d', False))
        weight_decay = self.base_wd or 0.0

        depth_fn, depth_prefix = None, ''
        for name, m in module.named_modules():
            if hasattr(m, 'get_layer_depth') and m is not module:
                depth_fn, depth_prefix = m.get_layer_depth, (name + '.' if name else '')
                break
        if depth_fn is None and hasattr(module, 'get_layer_depth'):
            depth_fn = module.get_layer_depth
        if depth_fn is None and rate != 1.0:
            raise ValueError('LayerDecayOptimWrapperConstructor: no submodule has get_layer_depth(); '
                             'use a backbone such as ADDPViT or set layer_decay_rate=1.0')

        groups: Dict[tuple, Dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if depth_fn is not None:
                depth, num_layers = depth_fn(name, depth_prefix)
            else:
                depth, num_layers = 0, 1
            scale = rate ** (num_layers - 1 - depth)
            wd = 0.0 if ((param.ndim == 1 and not decay_1d) or any(k in name for k in no_decay)) else weight_decay
            key = (depth, wd)
            if key not in groups:
                groups[key] = dict(params=[], lr=self.base_lr * scale, weight_decay=wd,
                                   lr_scale=scale, layer_depth=depth, param_names=[])
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        for key in sorted(groups):
            params.append(groups[key])
        print_log(f'layer-wise lr decay {rate}: {len(groups)} parameter groups, lr scales '
                  f'{sorted({round(g["lr_scale"], 6) for g in groups.values()})}', logger='current')
