"""``ADDPViT``: the ADDP pixel encoder as an OpenMMLab backbone (mmdet, mmseg and mmpretrain).

Registered once in mmengine's root ``MODELS`` registry, so ``dict(type='ADDPViT')`` builds from any
toolbox scope. Conventions follow mmpretrain's ``VisionTransformer`` (``arch``, ``out_indices``,
``out_type``, ``frozen_stages``, ``get_layer_depth``); the windowed / relative-position options are
ViTDet's.
"""
import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import PatchEmbed

from addp_mm.compat import register_load_state_dict_pre_hook
from addp_mm.checkpoint import ENCODER, encoder_state_dict, load_weights, rename_encoder_keys
from addp_mm.errors import UsageError

from ..layers import build_blocks, resize_pos_embed

OUT_TYPES = ('featmap', 'raw', 'cls_token', 'avg_featmap')
INIT_MODES = ('trunc_normal', 'release')


def _norm_factory(norm_cfg: Dict):
    """``norm_cfg`` -> a ``dim -> nn.Module`` factory (mmcv's norm layers when mmcv is present)."""
    cfg = dict(norm_cfg)
    layer_type = cfg.pop('type', 'LN')
    if layer_type in ('LN', 'LayerNorm'):
        eps = cfg.pop('eps', 1e-6)
        requires_grad = cfg.pop('requires_grad', True)  # mm configs write it (mmcv honours it too)

        def layer_norm(dim: int) -> nn.LayerNorm:
            norm = nn.LayerNorm(dim, eps=eps, **cfg)
            return norm.requires_grad_(requires_grad)
        return layer_norm
    from mmcv.cnn import build_norm_layer
    return lambda dim: build_norm_layer(dict(norm_cfg), dim)[1]


@MODELS.register_module()
class ADDPViT(BaseModule):
    """ADDP's ViT encoder.

    Args:
        arch (str | dict): ``'base'``, ``'large'`` (the release sizes), ``'small'``, ``'tiny'`` or
            ``'demo'`` (tiny presets for CPU demos), or a dict with ``embed_dims``, ``num_layers``,
            ``num_heads``, ``feedforward_channels``.
        img_size (int | tuple): the size the position table is made for; checkpoints are
            interpolated to it on load and inputs of other sizes are interpolated on the fly.
        patch_size (int): patch size (16 in the release).
        in_channels (int): image channels.
        qkv_bias (bool): bias of the attention's qkv projection.
        drop_rate (float): dropout after the position embedding, in attention projections and MLPs.
        attn_drop_rate (float): dropout of the attention weights.
        drop_path_rate (float): stochastic depth, increasing linearly to this rate over the blocks.
        norm_cfg (dict): the LayerNorms (``dict(type='LN', eps=1e-6)``; mmcv norm types otherwise).
        out_indices (int | Sequence[int]): blocks whose outputs are returned (negative: from the
            end).
        frozen_stages (int): freeze the embeddings and the first ``frozen_stages`` blocks (and the
            final norm when all are frozen); -1 freezes nothing.
        pre_norm (bool): apply the release's ``tokenizer_norm`` LayerNorm after adding position
            embeddings. ADDP pretraining uses it; the release's fine-tuning silently drops it (it
            loads non-strictly), so the default ``False`` reproduces the released downstream models.
        final_norm (bool): LayerNorm after the last block.
        with_cls_token (bool): prepend the class token. Must be ``False`` with window attention or
            relative position (those work on the 2-D patch grid, as in ViTDet); then
            ``cls_token`` is ``None`` (the position table keeps its class slot, unused).
        out_type (str): ``'featmap'`` (B x C x H/p x W/p per ``out_indices``), ``'raw'``
            (B x (1+N) x C tokens), ``'cls_token'`` or ``'avg_featmap'`` (mean of patch tokens
            followed by ``fc_norm``, as the release's classifier).
        window_size (int): ViTDet window attention size (0: global everywhere).
        window_block_indexes (Sequence[int]): blocks that use window attention; others are global.
        use_rel_pos (bool): decomposed relative position in every block (zero-initialised when the
            checkpoint has none).
        with_cp (bool): activation checkpointing per block.
        interpolate_mode (str): how the position table is resized.
        attn_fp32 (bool): attention in float32 under autocast (see ``Attention``); the release's
            pretraining does this, downstream fine-tuning does not (default).
        init_mode (str): random initialisation of the Linear layers (position table and class
            token: N(0, 0.02); patch embedding: Xavier-uniform; LayerNorms: 1 / 0 in both modes).
            ``'trunc_normal'`` (default): truncated N(0, 0.02), as mmpretrain's / ViTDet's ViT.
            ``'release'``: Xavier-uniform weights and zero biases, the ADDP release's
            ``_init_weights``; pretraining from scratch uses it.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads the encoder from a released
            ADDP pretraining or fine-tuning checkpoint, one of ours, or a converted file.
        pretrained (str, optional): deprecated alias of ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)``, as in mmseg's own ViT (mmseg's ``EncoderDecoder`` copies
            ``model.pretrained`` here); ``None`` is ignored.

    Every load (``init_cfg``, ``load_from``, resume, ``load_state_dict``) resizes a position table
    or relative-position tables of another grid to this model's, in a load-state-dict pre-hook.
    """

    arch_zoo = {
        **dict.fromkeys(['demo'], dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256)),
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768)),
        **dict.fromkeys(['s', 'small'], dict(embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072)),
        **dict.fromkeys(['l', 'large'], dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096)),
    }
    num_extra_tokens = 1  # the position table always has the class slot, as the release's

    def __init__(self,
                 arch: Union[str, Dict] = 'base',
                 img_size: Union[int, Tuple[int, int]] = 256,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: Dict = dict(type='LN', eps=1e-6),
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = -1,
                 final_norm: bool = True,
                 pre_norm: bool = False,
                 with_cls_token: bool = True,
                 out_type: str = 'featmap',
                 window_size: int = 0,
                 window_block_indexes: Sequence[int] = (),
                 use_rel_pos: bool = False,
                 with_cp: bool = False,
                 interpolate_mode: str = 'bicubic',
                 attn_fp32: bool = False,
                 init_mode: str = 'trunc_normal',
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None,
                 pretrained: Optional[str] = None):
        init_cfg = _pretrained_to_init_cfg(pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg)
        if init_mode not in INIT_MODES:
            raise UsageError(f'ADDPViT init_mode={init_mode!r}: choose one of {INIT_MODES}')
        self.init_mode = init_mode
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_layers = self.arch_settings['num_layers']
        self.img_size = _pair(img_size, 'img_size')
        self.patch_size = patch_size
        self.patch_resolution = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        if out_type not in OUT_TYPES:
            raise UsageError(f'ADDPViT out_type={out_type!r}: choose one of {OUT_TYPES}')
        if out_type == 'cls_token' and not with_cls_token:
            raise UsageError("ADDPViT out_type='cls_token' needs with_cls_token=True")
        if (window_size > 0 or use_rel_pos) and with_cls_token:
            raise UsageError('ADDPViT window attention / relative position work on the patch grid: '
                             'set with_cls_token=False (as ViTDet does)')
        self.out_type = out_type
        self.with_cls_token = with_cls_token
        self.frozen_stages = frozen_stages
        self.final_norm = final_norm
        self.with_cp = with_cp
        self.interpolate_mode = interpolate_mode
        self.out_indices = self._parse_out_indices(out_indices)
        norm_layer = _norm_factory(norm_cfg)

        # timm's PatchEmbed: a 16x16 conv; pads inputs that are not a multiple of the patch size
        self.patch_embed = PatchEmbed(img_size=self.img_size, patch_size=patch_size, in_chans=in_channels,
                                      embed_dim=self.embed_dims, flatten=False, output_fmt='NHWC',
                                      strict_img_size=False, dynamic_img_pad=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims)) if with_cls_token else None
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_extra_tokens, self.embed_dims))
        self.pre_norm = norm_layer(self.embed_dims) if pre_norm else nn.Identity()
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.blocks = build_blocks(
            self.num_layers, self.embed_dims, self.arch_settings['num_heads'],
            mlp_ratio=self.arch_settings['feedforward_channels'] / self.embed_dims, qkv_bias=qkv_bias,
            drop=drop_rate, attn_drop=attn_drop_rate, drop_path_rate=drop_path_rate,
            norm_layer=norm_layer, window_size=window_size, window_block_indexes=window_block_indexes,
            use_rel_pos=use_rel_pos, input_size=self.patch_resolution, attn_fp32=attn_fp32)
        self.norm = norm_layer(self.embed_dims) if final_norm else nn.Identity()
        self.fc_norm = norm_layer(self.embed_dims) if out_type == 'avg_featmap' else nn.Identity()
        self._freeze_stages()
        register_load_state_dict_pre_hook(self, self._prepare_loaded_tables)

    # ------------------------------------------------------------------ construction helpers
    def _parse_arch(self, arch) -> Dict:
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise UsageError(f'ADDPViT arch {arch!r} is not one of {sorted(set(self.arch_zoo))}; '
                               'or pass a dict with embed_dims, num_layers, num_heads, feedforward_channels')
            return dict(self.arch_zoo[arch.lower()])
        needed = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
        if not isinstance(arch, dict) or not needed <= set(arch):
            raise UsageError(f'ADDPViT arch dict needs the keys {sorted(needed)}, got {arch!r}')
        return dict(arch)

    def _parse_out_indices(self, out_indices) -> List[int]:
        if not isinstance(out_indices, (int, list, tuple)):
            raise UsageError(f'ADDPViT out_indices must be an int or a list / tuple of ints, got '
                            f'{type(out_indices).__name__} {out_indices!r}')
        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        parsed = []
        for i in out_indices:
            j = i + self.num_layers if i < 0 else i
            if not 0 <= j < self.num_layers:
                raise UsageError(f'ADDPViT out_indices entry {i} is out of range for {self.num_layers} layers')
            parsed.append(j)
        return parsed

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        self._init_random()
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            self.load_pretrained(self.init_cfg['checkpoint'])
        elif self.init_cfg is not None:  # other initialisers (e.g. Kaiming on Conv2d) on top
            super().init_weights()
        self._freeze_stages()

    def _init_random(self):
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if self.init_mode == 'release':
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def load_pretrained(self, checkpoint: str):
        """Load the encoder weights of any supported file (see the class doc): its patch
        embedding and blocks must fit; position and relative-position tables are resized; what
        was used, ignored and left initialised is logged and returned (a
        :class:`~addp_mm.checkpoint.LoadReport`)."""
        report = load_weights(self, checkpoint, encoder_state_dict, ENCODER,
                              'ADDPViT init_cfg.checkpoint')
        report.log('ADDPViT')
        return report

    def _resize_tables(self, state: Dict[str, torch.Tensor], prefix: str = '') -> None:
        """Resize, in ``state``, the position table and the relative-position tables of another
        grid to this model's."""
        key = prefix + 'pos_embed'
        if key in state and state[key].shape != self.pos_embed.shape:
            src = state[key]
            if self.cls_token is None and math.isqrt(src.shape[1]) ** 2 == src.shape[1]:
                # a table without the class slot (mmpretrain's with_cls_token=False): slot zero
                src = torch.cat([src.new_zeros(1, 1, src.shape[2]), src], dim=1)
            n = src.shape[1] - self.num_extra_tokens
            side = int(math.isqrt(n))
            if side * side != n:
                raise UsageError(f'checkpoint pos_embed has {n} grid slots: not a square grid')
            state[key] = resize_pos_embed(src, (side, side), self.patch_resolution,
                                          self.num_extra_tokens, self.interpolate_mode)
        for name, table in self.named_parameters():
            key = prefix + name
            if 'rel_pos' in name and key in state and state[key].shape != table.shape:
                state[key] = torch.nn.functional.interpolate(
                    state[key].t().unsqueeze(0), size=table.shape[0], mode='linear').squeeze(0).t()

    def _prepare_loaded_tables(self, module, state_dict, prefix, *args) -> None:
        """Load-state-dict pre-hook, so that every load path (``init_cfg``, ``load_from``,
        mmengine's ``load_checkpoint``, the toolboxes' ``init_model`` / ``get_model``) takes what
        ``init_cfg`` takes: the keys of an ADDP file in our names
        (:func:`~addp_mm.checkpoint.rename_encoder_keys`), the tables resized; a ``cls_token``
        this model does not have (``with_cls_token=False``) is dropped."""
        rename_encoder_keys(state_dict, prefix)
        self._resize_tables(state_dict, prefix)
        if self.cls_token is None:
            state_dict.pop(prefix + 'cls_token', None)

    # ------------------------------------------------------------------ freezing / lr decay
    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, self.pre_norm, self.drop_after_pos]
        frozen += list(self.blocks[:self.frozen_stages])
        if self.frozen_stages >= self.num_layers:
            frozen += [self.norm, self.fc_norm]
        if self.cls_token is not None:
            self.cls_token.requires_grad = False
        self.pos_embed.requires_grad = False
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer depth of a parameter for layer-wise lr decay (mmpretrain's convention).

        Returns ``(depth, num_layers + 2)``: 0 for the patch/position/class embeddings and the
        pre-norm, ``i + 1`` for block ``i``, ``num_layers + 1`` for everything after the blocks
        and for parameters outside this backbone.
        """
        total = self.num_layers + 2
        if not param_name.startswith(prefix):
            return total - 1, total
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith(('patch_embed', 'pre_norm')):
            return 0, total
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, total
        return total - 1, total

    # ------------------------------------------------------------------ forward
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Patch-embed ``x`` (B x C x H x W, normalised), add positions, prepend the class token,
        apply the pre-norm. Returns the tokens and the patch grid ``(h, w)``."""
        x = self.patch_embed(x)
        hw = (x.shape[1], x.shape[2])
        x = x.flatten(1, 2)
        pos = resize_pos_embed(self.pos_embed, self.patch_resolution, hw, self.num_extra_tokens,
                               self.interpolate_mode)
        x = x + pos[:, self.num_extra_tokens:]
        if self.with_cls_token:
            cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
        x = self.drop_after_pos(self.pre_norm(x))
        return x, hw

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, hw = self.embed(x)
        outs = []
        last = self.num_layers - 1
        for i, block in enumerate(self.blocks):
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(block, x, hw, use_reentrant=False)
            else:
                x = block(x, hw)
            if i == last:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, hw))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patches = x[:, 1:] if self.with_cls_token else x
        if self.out_type == 'avg_featmap':
            return self.fc_norm(patches.mean(dim=1))
        B, _, C = patches.shape
        return patches.transpose(1, 2).reshape(B, C, hw[0], hw[1]).contiguous()


def _pair(size, name: str) -> Tuple[int, int]:
    """``N``, ``(N, )`` -> ``(N, N)``; ``(H, W)`` as it is (mmseg's conventions)."""
    if isinstance(size, int):
        return size, size
    if not isinstance(size, (tuple, list)) or not all(isinstance(s, int) for s in size):
        raise UsageError(f'ADDPViT {name} must be an int or a tuple of 1 or 2 ints, got {size!r}')
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise UsageError(f'ADDPViT {name}={size!r}: give (H, W), (N, ) or N')
    return tuple(size)


def _pretrained_to_init_cfg(pretrained: Optional[str], init_cfg):
    """mmseg's convention for backbones: ``pretrained=PATH`` is a deprecated alias of
    ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``; ``None`` changes nothing."""
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise UsageError(f'ADDPViT pretrained must be a checkpoint path or None, got {pretrained!r}')
    if init_cfg is not None:
        raise UsageError(
            f'ADDPViT got both pretrained={pretrained!r} and init_cfg={init_cfg!r}. mmseg\'s '
            'EncoderDecoder copies model.pretrained into the backbone: set model.pretrained=None '
            '(stock configs name ImageNet ResNet weights there) and keep backbone.init_cfg, or give '
            'the ADDP checkpoint as model.pretrained without an init_cfg')
    if '://' in pretrained:
        raise UsageError(
            f'ADDPViT pretrained={pretrained!r} is not an ADDP checkpoint file (mmseg\'s '
            'EncoderDecoder copied it from model.pretrained of the stock config, which names '
            'ResNet weights): set model.pretrained to an ADDP checkpoint path or to None')
    warnings.warn('ADDPViT: pretrained is deprecated, use init_cfg=dict(type=\'Pretrained\', '
                  f'checkpoint={pretrained!r})')
    return dict(type='Pretrained', checkpoint=pretrained)


def width_mismatch(key: str, value: int, width: int, source: str) -> UsageError:
    """The one rule for what reads the encoder's maps (a neck, a head): it takes the encoder's
    width. The error names the key, the width ``source`` gives and the fix."""
    return UsageError(f"{key}={value} does not match the backbone's width: {source} gives {width} "
                      f'channels; set {key}={width} (or another arch)')
