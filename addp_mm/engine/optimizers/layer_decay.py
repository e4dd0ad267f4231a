"""Layer-wise learning-rate decay for any model whose backbone has ``get_layer_depth``.

Registered in mmengine's root registry, so mmdet, mmseg and mmpretrain configs all use it as
``optim_wrapper=dict(constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(
layer_decay_rate=0.65))``.
"""
import re
from typing import Dict, List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from addp_mm.errors import UsageError

# normalisation layers for ``norm_decay_mult`` (subclasses included: timm's LayerNorm2d = LN2d)
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
              nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
PARAMWISE_KEYS = ('layer_decay_rate', 'custom_keys', 'no_decay_names', 'norm_decay_mult',
                  'bias_decay_mult', 'flat_decay_mult')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """lr of a parameter at depth ``d`` of ``L`` = base lr x ``layer_decay_rate ** (L - 1 - d)``.

    The depth comes from the ``get_layer_depth(name, prefix)`` of the first module that has one
    (``ADDPViT``: embeddings 0, block i -> i + 1, the rest L - 1); parameters outside it get the
    full lr. Frozen parameters (``requires_grad=False``) are left out of the optimizer.

    ``paramwise_cfg``:

    - ``layer_decay_rate`` (float): the decay (1.0: none).
    - weight decay per parameter, by the first of these rules that applies (names are the
      model's, e.g. ``backbone.blocks.0.norm1.weight``):

      1. ``custom_keys`` (dict): ``{name fragment: dict(decay_mult=..., lr_mult=...)}``; the
         longest fragment contained in the name wins (mmengine's convention).
      2. ``no_decay_names`` (tuple[str]): name fragments without weight decay. Default
         ``('pos_embed', 'cls_token', 'mask_token', 'rel_pos_h', 'rel_pos_w')``.
      3. ``norm_decay_mult``: parameters of normalisation layers (BatchNorm, GroupNorm,
         InstanceNorm, LayerNorm and its subclasses such as ``LN2d``); unset: rule 4.
      4. ``bias_decay_mult``: parameters named ``bias``; unset: rule 5.
      5. ``flat_decay_mult``: any other 1-d parameter (default 0.0).

    The default (no key given) is the MAE / BEiT fine-tuning convention that the ADDP release's
    fine-tuning uses: no weight decay on 1-d parameters (norms, biases), position / class / mask
    tokens or relative-position tables. The COCO configs give ViTDet's instead.
    """

    DEFAULT_NO_DECAY = ('pos_embed', 'cls_token', 'mask_token', 'rel_pos_h', 'rel_pos_w')

    def add_params(self, params: List[Dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        cfg = self.paramwise_cfg
        unknown = sorted(set(cfg) - set(PARAMWISE_KEYS))
        if unknown:
            raise UsageError(f'LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys {unknown}; '
                           f'the keys are {list(PARAMWISE_KEYS)}')
        rate = float(cfg.get('layer_decay_rate', 1.0))
        weight_decay = self.base_wd or 0.0

        depth_fn, depth_prefix = None, ''
        for name, m in module.named_modules():
            if hasattr(m, 'get_layer_depth') and m is not module:
                depth_fn, depth_prefix = m.get_layer_depth, (name + '.' if name else '')
                break
        if depth_fn is None and hasattr(module, 'get_layer_depth'):
            depth_fn = module.get_layer_depth
        if depth_fn is None and rate != 1.0:
            raise UsageError('LayerDecayOptimWrapperConstructor: no submodule has get_layer_depth(); '
                             'use a backbone such as ADDPViT or set layer_decay_rate=1.0')

        norm_params = {id(p) for m in module.modules() if isinstance(m, NORM_TYPES)
                       for p in m.parameters(recurse=False)}
        groups: Dict[tuple, Dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if depth_fn is not None:
                depth, num_layers = depth_fn(name, depth_prefix)
            else:
                depth, num_layers = 0, 1
            scale = rate ** (num_layers - 1 - depth)
            decay_mult, lr_mult = decay_rule(name, param, id(param) in norm_params, cfg,
                                             self.DEFAULT_NO_DECAY)
            wd = weight_decay * decay_mult
            key = (depth, wd, lr_mult)
            if key not in groups:
                groups[key] = dict(params=[], lr=self.base_lr * scale * lr_mult, weight_decay=wd,
                                   lr_scale=scale * lr_mult, layer_depth=depth, param_names=[])
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        for key in sorted(groups):
            params.append(groups[key])
        no_wd = sorted(n for g in groups.values() if g['weight_decay'] == 0 for n in g['param_names'])
        print_log(f'layer-wise lr decay {rate}: {len(groups)} parameter groups, lr scales '
                  f'{sorted({round(g["lr_scale"], 6) for g in groups.values()})}; no weight decay on '
                  f'{len(no_wd)} parameters: {_by_pattern(no_wd)}', logger='current')


def decay_rule(name: str, param, is_norm: bool, cfg: Dict, default_no_decay=()) -> tuple:
    """``(decay_mult, lr_mult)`` of one parameter under ``paramwise_cfg`` (see the class doc)."""
    custom_keys: Dict = cfg.get('custom_keys') or {}
    matches = [k for k in custom_keys if k in name]
    if matches:
        custom = custom_keys[max(sorted(matches), key=len)]
        return float(custom.get('decay_mult', 1.0)), float(custom.get('lr_mult', 1.0))
    if any(k in name for k in tuple(cfg.get('no_decay_names', default_no_decay))):
        return 0.0, 1.0
    norm_mult: Optional[float] = cfg.get('norm_decay_mult')
    bias_mult: Optional[float] = cfg.get('bias_decay_mult')
    flat_mult = float(cfg.get('flat_decay_mult', 0.0))
    if is_norm and norm_mult is not None:
        return float(norm_mult), 1.0
    if name.rsplit('.', 1)[-1] == 'bias' and bias_mult is not None:
        return float(bias_mult), 1.0
    if param.ndim == 1:
        return flat_mult, 1.0
    return 1.0, 1.0


def _by_pattern(names: List[str]) -> str:
    """Every name, with block indices folded: ``backbone.blocks.*.norm1.weight (12)``."""
    counts: Dict[str, int] = {}
    for name in names:
        pattern = re.sub(r'\.\d+\.', '.*.', name)
        counts[pattern] = counts.get(pattern, 0) + 1
    return ', '.join(f'{p} ({n})' if n > 1 else p for p, n in counts.items()) if names else 'none'
