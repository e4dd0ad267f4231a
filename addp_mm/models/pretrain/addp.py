"""The ADDP pretraining algorithm as an mmengine ``BaseModel``: noise, encode, decode, loss.

    target_generator (ADDPNoiser, frozen) ─> x_t, token ids, mask_t, soft targets
    backbone (ADDPViT, pre-norm) on ImageNet-normalised x_t ─> B x (1+N) x C
    neck (ADDPDecoder) with the ids visible under mask_t ─> logits over the vocabulary
    head (ADDPSoftTargetLoss) against the targets at mask_t
"""
from typing import Dict, Optional

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from ..utils.checkpoint import (addp_state_dict, read_checkpoint, require_full_addp_checkpoint,
                                unwrap_state_dict)

# the encoder reads ImageNet-normalised pixels (the tokenizer reads them in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NonFiniteLossError(RuntimeError):
    """The pretraining loss became NaN/inf in full precision (raised on every rank by the
    ``NonFiniteGuardOptimWrapper`` of ``addp_mm.engine``)."""


@MODELS.register_module()
class ADDP(BaseModel):
    """Alternating Denoising Diffusion Process pretraining.

    Args:
        backbone (dict): the pixel encoder, ``ADDPViT`` with ``pre_norm=True``, ``out_type='raw'``
            and ``final_norm=True`` (the release's encoder).
        neck (dict): the token decoder, ``ADDPDecoder``; ``embed_dim``, ``num_patches`` and
            ``codebook_size`` default to the backbone's width, its patch grid and the tokenizer's
            codebook.
        head (dict): the loss, ``ADDPSoftTargetLoss``.
        target_generator (dict): the frozen ``ADDPNoiser`` (tokenizer, token predictor, mask
            schedule).
        data_preprocessor (dict): turns uint8 BGR batches into float RGB in [0, 1].
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` loads encoder and
            decoder from a released ADDP checkpoint or one of ours (the frozen parts still come
            from their own files).
    """

    def __init__(self,
                 backbone: Dict,
                 neck: Dict,
                 head: Dict,
                 target_generator: Dict,
                 data_preprocessor: Optional[Dict] = dict(
                     type='ImgDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=True),
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.target_generator = MODELS.build(target_generator)
        self.neck = MODELS.build(self._complete_neck(neck))
        self.head = MODELS.build(head)
        self.register_buffer('pixel_mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _complete_neck(self, neck: Dict) -> Dict:
        """The decoder's sizes that the backbone and the tokenizer fix, filled in and checked."""
        tokenizer = self.target_generator.tokenizer
        grid = tuple(tokenizer.grid_size(self.backbone.img_size))
        if grid != tuple(self.backbone.patch_resolution):
            raise ValueError(
                f'the tokenizer turns {tuple(self.backbone.img_size)} images into a {grid} token '
                f'grid but the backbone into a {tuple(self.backbone.patch_resolution)} patch grid: '
                f'they must coincide (backbone patch_size = tokenizer downsampling '
                f'{tokenizer.downsample_factor})')
        derived = dict(embed_dim=self.backbone.embed_dims, num_patches=grid[0] * grid[1],
                       codebook_size=tokenizer.n_embed)
        neck = dict(neck)
        for key, value in derived.items():
            if neck.setdefault(key, value) != value:
                raise ValueError(f'model.neck.{key}={neck[key]} but the backbone / tokenizer give '
                                 f'{value}: leave it out of the config')
        return neck

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            for module in (self.backbone, self.neck, self.target_generator):
                module.init_weights()
            self.load_addp_checkpoint(self.init_cfg['checkpoint'])
        else:
            super().init_weights()

    def load_addp_checkpoint(self, checkpoint, name: Optional[str] = None) -> None:
        """Load encoder + decoder (strictly) from a released ADDP checkpoint or one of ours
        (a file, or a checkpoint already read, called ``name`` in messages)."""
        if isinstance(checkpoint, dict):
            obj, name = checkpoint, name or 'the given checkpoint'
        else:
            obj = read_checkpoint(checkpoint, 'model.init_cfg.checkpoint', source='addp')
            name = checkpoint
        state = unwrap_state_dict(obj)
        require_full_addp_checkpoint(state, name)
        state = addp_state_dict(state)
        for part in ('backbone', 'neck'):
            weights = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + '.')}
            if not weights:
                raise ValueError(f'{name}: no {part} weights found (is it an ADDP checkpoint?)')
            getattr(self, part).load_state_dict(weights, strict=True)
        print_log(f'ADDP: loaded encoder and decoder from {name}', logger='current')

    # ------------------------------------------------------------------ the pieces of a step
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """The encoder on pixels in [0, 1] (clamped, ImageNet-normalised): ``B x (1+N) x C``."""
        x = (pixels.clamp(0, 1) - self.pixel_mean) / self.pixel_std
        return self.backbone(x)[-1]

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode(inputs)

    # ------------------------------------------------------------------ BaseModel API
    def loss(self, inputs: torch.Tensor, data_samples=None, mask_t: Optional[torch.Tensor] = None,
             mask_next: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Noise (frozen), encode, decode, loss. The masks are drawn unless given."""
        noised = self.target_generator(inputs, mask_t, mask_next)
        features = self.encode(noised['x_t'])
        # only the masked grid positions are scored: the loss reads nothing else
        logits = self.neck(features, noised['indices'], noised['mask_t'], noised['num_visible'],
                           masked_only=True)
        return dict(loss=self.head(logits, noised['target'], noised['mask_t'], masked_only=True))

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.encode(inputs)
        if mode == 'predict':
            raise RuntimeError("ADDP has no 'predict' mode: generate images with tools/generate.py")
        raise ValueError(f'ADDP.forward: unknown mode {mode!r}')
