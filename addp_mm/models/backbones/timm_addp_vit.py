"""The ADDP encoder as timm models: ``timm.create_model('addp_vit_base_patch16_256')`` and
``'addp_vit_large_patch16_256'`` (registered when ``addp_mm`` is imported).

They are timm's own ``VisionTransformer`` with ADDP's settings (LayerNorm eps 1e-6, a patch
embedding with bias, the release fine-tuning's head: mean of the patch tokens + ``fc_norm``), so
timm's model API works on them as on its ViTs (``forward_intermediates``, ``features_only=True``,
``dynamic_img_size`` / ``dynamic_img_pad``, ``img_size=``, ``set_input_size``, TorchScript, FX).
Their one tag, ``.release``, is the released pretraining file (an encoder: ``num_classes=0``;
256 px, fixed unless ``dynamic_img_size=True``), read from ``checkpoints/`` or from the file given
as ``pretrained_cfg_overlay=dict(file=...)``::

    timm.create_model('addp_vit_base_patch16_256', pretrained=True,
                      pretrained_cfg_overlay=dict(file='checkpoints/addp-vit-base-16.pth'))

Any ADDP encoder file (release pretraining or fine-tuning, a pretraining's ``backbone.pth``) is
read through :func:`addp_mm.checkpoint.load_weights` (safe reading, the
:func:`~addp_mm.checkpoint.timm_vit_state_dict` converter, every block required); nothing is
downloaded. Every load (also ``load_state_dict``) resizes a position table of another grid as
``ADDPViT`` does (bicubic, no antialiasing, class slot kept), and so does an input of another size
with ``dynamic_img_size=True``: the features are ``ADDPViT``'s at every size. ``pre_norm=True``
keeps the release encoder's ``tokenizer_norm`` (the pretraining's encoder); the default leaves it
out, as the release's fine-tuning does.
"""
import math
from functools import partial
from typing import Any, Dict, List, Optional, Tuple

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (LayerNorm, PatchEmbed, register_notrace_function, resample_abs_pos_embed,
                         resample_patch_embed)
from timm.models import (adapt_input_conv, build_model_with_cfg, generate_default_cfgs,
                         register_model)
from timm.models.vision_transformer import VisionTransformer

from addp_mm.checkpoint import ENCODER, load_weights, timm_vit_state_dict
from addp_mm.compat import register_load_state_dict_pre_hook
from addp_mm.errors import UsageError

__all__ = ['TimmADDPViT']


def _patch_embed_with_bias(**kwargs) -> PatchEmbed:
    """timm drops the patch bias when ``pre_norm`` is set (CLIP); ADDP's keeps it."""
    kwargs['bias'] = True
    return PatchEmbed(**kwargs)


@torch.fx.wrap
@register_notrace_function
def resize_table(table: torch.Tensor, new_size: List[int], old_size: List[int]) -> torch.Tensor:
    """A ``(1, 1 + H*W, C)`` position table resized from grid ``old_size`` to ``new_size`` as
    ADDP resizes it (bicubic, ``align_corners=False``, no antialiasing; the class slot kept)."""
    return resample_abs_pos_embed(table, new_size, old_size, num_prefix_tokens=1, antialias=False)


class TimmADDPViT(VisionTransformer):
    """timm's ``VisionTransformer`` whose position table is resized as ADDP's (on load and, with
    ``dynamic_img_size=True``, per input) and whose pretrained weights load through our checkpoint
    layer (timm calls :meth:`load_pretrained` for a ``custom_load`` pretrained config)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        register_load_state_dict_pre_hook(self, self._fit_loaded)

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str, prefix: str = '') -> None:
        if self.pos_embed.is_meta:
            name = getattr(self, 'pretrained_cfg', {}).get('architecture', type(self).__name__)
            raise UsageError(f"{name}: pretrained=True on the meta device loads nothing: build the "
                             "model on a device, or call model.to_empty(device='cpu') and then "
                             "model.load_pretrained(FILE)")
        load_weights(self, checkpoint_path, timm_vit_state_dict, ENCODER,
                     key="pretrained_cfg_overlay['file']").log(type(self).__name__)

    def _fit_loaded(self, module, state: Dict[str, Any], prefix: str, *args) -> None:
        """Load-state-dict pre-hook: a square position table of another grid is resized to the
        model's (:func:`resize_table`); a patch kernel of another size or for other input channels
        is adapted as timm adapts its pretrained files (``resample_patch_embed``,
        ``adapt_input_conv``)."""
        table = state.get(prefix + 'pos_embed')
        if table is not None and table.shape[1] != self.pos_embed.shape[1]:
            side = math.isqrt(table.shape[1] - 1)
            if side * side == table.shape[1] - 1:
                state[prefix + 'pos_embed'] = resize_table(table, list(self.patch_embed.grid_size),
                                                           [side, side])
        kernel = state.get(prefix + 'patch_embed.proj.weight')
        own = self.patch_embed.proj.weight
        if kernel is not None and kernel.ndim == 4 and kernel.shape[1:] != own.shape[1:]:
            if kernel.shape[-2:] != own.shape[-2:]:
                kernel = resample_patch_embed(kernel, list(own.shape[-2:]))
            if kernel.shape[1] != own.shape[1]:
                kernel = adapt_input_conv(own.shape[1], kernel)
            state[prefix + 'patch_embed.proj.weight'] = kernel

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """timm's position step (the class token first, then the table added), the table resized
        to the input's grid with ``dynamic_img_size=True`` by :func:`resize_table` (timm's own
        ViTs antialias)."""
        table = self.pos_embed
        if self.dynamic_img_size:  # the patch embedding's output is B x H x W x C
            B, H, W, C = x.shape
            table = resize_table(table, [H, W], list(self.patch_embed.grid_size))
            x = x.view(B, -1, C)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + table)

    @torch.jit.ignore
    def set_input_size(self, img_size: Optional[Tuple[int, int]] = None,
                       patch_size: Optional[Tuple[int, int]] = None) -> None:
        """timm's, the position table resized by :func:`resize_table` (as on load)."""
        grid, table = tuple(self.patch_embed.grid_size), self.pos_embed.detach()
        super().set_input_size(img_size=img_size, patch_size=patch_size)
        if tuple(self.patch_embed.grid_size) != grid:
            self.pos_embed = torch.nn.Parameter(
                resize_table(table, list(self.patch_embed.grid_size), list(grid)),
                requires_grad=self.pos_embed.requires_grad)


def _cfg(file: str) -> Dict[str, Any]:
    # the released pretraining file (an encoder, no classifier); the release evaluates at 256 px:
    # short side resized to 256 (bicubic), centre crop 256
    return dict(url='', file=f'checkpoints/{file}', num_classes=0, input_size=(3, 256, 256),
                fixed_input_size=True, pool_size=None, crop_pct=1.0, crop_mode='center',
                interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                first_conv='patch_embed.proj', classifier='head', custom_load=True,
                license='apache-2.0', origin_url='https://github.com/ChangyaoTian/ADDP')


default_cfgs = generate_default_cfgs({
    'addp_vit_base_patch16_256.release': _cfg('addp-vit-base-16.pth'),
    'addp_vit_large_patch16_256.release': _cfg('addp-vit-large-16.pth'),
})

# what every ADDP encoder and file is: a class token, a learned position table with its slot
_LAYOUT = dict(class_token=True, reg_tokens=0, no_embed_class=False, pos_embed='learn')


def _filter(state: Dict[str, Any], model: TimmADDPViT) -> Dict[str, Any]:
    return timm_vit_state_dict(state)


def _create(variant: str, pretrained: bool = False, **kwargs) -> TimmADDPViT:
    for key, value in _LAYOUT.items():
        if key in kwargs and kwargs[key] != value:
            raise UsageError(f'{variant}: {key}={kwargs[key]!r} is not available: the ADDP encoder '
                             f'has a class token and a learned position table with its slot '
                             f'({key}={value!r}); use a timm vit_* model for another layout')
    out_indices = kwargs.pop('out_indices', 3)
    # a local file given as an overlay still loads through load_pretrained (timm would otherwise
    # reset custom_load and load it non-strictly)
    overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {})
    overlay.setdefault('custom_load', True)
    return build_model_with_cfg(
        TimmADDPViT, variant, pretrained, pretrained_cfg_overlay=overlay,
        pretrained_filter_fn=_filter,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'), **kwargs)


def _addp_args(size: Dict[str, Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """ADDP's settings and ``size``, then the caller's ``kwargs`` over them."""
    return dict(dict(patch_size=16, img_size=256, mlp_ratio=4.0, qkv_bias=True, global_pool='avg',
                     fc_norm=True, norm_layer=partial(LayerNorm, eps=1e-6),
                     embed_layer=_patch_embed_with_bias), **size) | kwargs


@register_model
def addp_vit_base_patch16_256(pretrained: bool = False, **kwargs) -> TimmADDPViT:
    """ADDP ViT-B/16 at 256 px (768 wide, 12 blocks, 12 heads)."""
    return _create('addp_vit_base_patch16_256', pretrained,
                   **_addp_args(dict(embed_dim=768, depth=12, num_heads=12), kwargs))


@register_model
def addp_vit_large_patch16_256(pretrained: bool = False, **kwargs) -> TimmADDPViT:
    """ADDP ViT-L/16 at 256 px (1024 wide, 24 blocks, 16 heads)."""
    return _create('addp_vit_large_patch16_256', pretrained,
                   **_addp_args(dict(embed_dim=1024, depth=24, num_heads=16), kwargs))
