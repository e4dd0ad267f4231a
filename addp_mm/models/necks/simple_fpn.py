"""ViTDet's simple feature pyramid as an mmdet neck."""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import LayerNorm2d

from addp_mm.errors import UsageError

from ..backbones.addp_vit import width_mismatch

# channels-first LayerNorm (timm's), for norm_cfg=dict(type='LN2d'); mmpretrain has its own in its scope
if 'LN2d' not in MODELS.module_dict:
    MODELS.register_module('LN2d', module=LayerNorm2d)


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid (ViTDet): from the single stride-16 map of a plain ViT build maps at
    ``scale_factors`` (default 4, 2, 1, 0.5: strides 4, 8, 16, 32) with transposed convolutions /
    max pooling, then a 1x1 and a 3x3 conv (each followed by ``norm_cfg``) per level, and
    ``num_outs - len(scale_factors)`` extra levels by stride-2 subsampling of the last one.

    Args:
        in_channels (int): channels of the backbone map (the ViT width).
        out_channels (int): channels of every output level (256 for Mask R-CNN).
        scale_factors (Sequence[float]): upsampling factors, each in {4, 2, 1, 0.5}.
        num_outs (int): number of levels returned (5 for the ViTDet Mask R-CNN).
        norm_cfg (dict): norm after each conv (``LN2d``: LayerNorm over channels, as ViTDet).
        in_index (int): which entry of the backbone's output tuple to use.
    """

    def __init__(self, in_channels: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), num_outs: int = 5,
                 norm_cfg: Dict = dict(type='LN2d', eps=1e-6), in_index: int = -1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        from mmcv.cnn import ConvModule, build_norm_layer  # mmdet's neck: mmcv is there
        if num_outs < len(scale_factors):
            raise UsageError(f'SimpleFPN num_outs={num_outs} < len(scale_factors)={len(scale_factors)}')
        self.in_index = in_index
        self.in_channels = in_channels
        self.num_outs = num_outs
        self.stages = nn.ModuleList()
        for scale in scale_factors:
            layers: List[nn.Module] = []
            dim = in_channels
            if scale == 4.0:
                layers += [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2),
                           build_norm_layer(norm_cfg, dim // 2)[1], nn.GELU(),
                           nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)]
                dim = dim // 4
            elif scale == 2.0:
                layers += [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)]
                dim = dim // 2
            elif scale == 0.5:
                layers += [nn.MaxPool2d(2, stride=2)]
            elif scale != 1.0:
                raise UsageError(f'SimpleFPN scale factor {scale} is not one of 4, 2, 1, 0.5')
            layers += [ConvModule(dim, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None),
                       ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=None)]
            self.stages.append(nn.Sequential(*layers))

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        x = inputs[self.in_index] if isinstance(inputs, (list, tuple)) else inputs
        if x.shape[1] != self.in_channels:  # mmdet's own tools run no preflight of ours
            raise width_mismatch('model.neck.in_channels', self.in_channels, x.shape[1],
                                 'the backbone')
        outs = [stage(x) for stage in self.stages]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        # LN2d permutes, so its outputs are channels-last in memory; mmcv's CPU RoIAlign reads the
        # raw buffer as NCHW, so hand out contiguous maps
        return tuple(o.contiguous() for o in outs)
