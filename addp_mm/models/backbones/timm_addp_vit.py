"""The ADDP encoder as timm models: ``timm.create_model('addp_vit_base_patch16_256')`` and
``'addp_vit_large_patch16_256'`` (registered when ``addp_mm`` is imported).

They are timm's own ``VisionTransformer`` with ADDP's settings (LayerNorm eps 1e-6, a patch
embedding with bias, the release fine-tuning's head: mean of the patch tokens + ``fc_norm``), so
every timm feature works on them (``features_only=True``, ``forward_intermediates``,
``timm.data.resolve_data_config``). Weights come from a local file::

    timm.create_model('addp_vit_base_patch16_256', pretrained=True,
                      pretrained_cfg_overlay=dict(file='checkpoints/addp-vit-base-16.pth'))

reads a released ADDP checkpoint (pretraining or fine-tuning), a pretraining's ``backbone.pth`` or
any ADDP encoder file through :func:`addp_mm.checkpoint.load_weights` (safe reading, the
:func:`~addp_mm.checkpoint.timm_vit_state_dict` converter, the position table resized to the
model's grid, every block required), as ``ADDPViT`` does; nothing is downloaded.
``pre_norm=True`` keeps the release encoder's ``tokenizer_norm`` (the pretraining's encoder); the
default leaves it out, as the release's fine-tuning does.
"""
from functools import partial
from typing import Any, Dict

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm, PatchEmbed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

from addp_mm.checkpoint import ENCODER, load_weights, timm_vit_state_dict

__all__ = ['TimmADDPViT']


def _patch_embed_with_bias(**kwargs) -> PatchEmbed:
    """timm drops the patch bias when ``pre_norm`` is set (CLIP); ADDP's keeps it."""
    kwargs['bias'] = True
    return PatchEmbed(**kwargs)


class TimmADDPViT(VisionTransformer):
    """timm's ``VisionTransformer`` whose pretrained weights load through our checkpoint layer
    (timm calls :meth:`load_pretrained` for a ``custom_load`` pretrained config)."""

    def load_pretrained(self, checkpoint_path: str, prefix: str = '') -> None:
        load_weights(self, checkpoint_path, timm_vit_state_dict, ENCODER,
                     key="pretrained_cfg_overlay['file']",
                     grid_size=tuple(self.patch_embed.grid_size)).log(type(self).__name__)


def _cfg(**kwargs) -> Dict[str, Any]:
    # the release evaluates at 256 px: short side resized to 256 (bicubic), centre crop 256
    return dict(url='', num_classes=1000, input_size=(3, 256, 256), pool_size=None,
                crop_pct=1.0, interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN,
                std=IMAGENET_DEFAULT_STD, first_conv='patch_embed.proj', classifier='head',
                custom_load=True, license='apache-2.0', **kwargs)


default_cfgs = generate_default_cfgs({
    'addp_vit_base_patch16_256.release': _cfg(),
    'addp_vit_large_patch16_256.release': _cfg(),
})


def _filter(state: Dict[str, Any], model: TimmADDPViT) -> Dict[str, Any]:
    return timm_vit_state_dict(state, tuple(model.patch_embed.grid_size))


def _create(variant: str, pretrained: bool = False, **kwargs) -> TimmADDPViT:
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
