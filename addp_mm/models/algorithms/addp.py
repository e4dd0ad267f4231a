"""The ADDP pretraining algorithm as an mmengine ``BaseModel``: noise, encode, decode, loss.

    target_generator (ADDPNoiser, frozen) ─> x_t, token ids, mask_t, soft targets
    backbone (ADDPViT, pre-norm) on ImageNet-normalised x_t ─> B x (1+N) x C
    neck (ADDPDecoder) with the ids visible under mask_t ─> logits over the vocabulary
    head (ADDPSoftTargetLoss) against the targets at mask_t
"""
from typing import Dict, Optional

import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from addp_mm.checkpoint import (LoadPolicy, addp_state_dict, load_weights, read_checkpoint,
                                require_full_addp_checkpoint, unwrap_state_dict)
from addp_mm.errors import UsageError

from ..utils.image import PIXELS_0_1
from ..utils.masking import masked_positions

# the encoder reads ImageNet-normalised pixels (the tokenizer reads them in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# an ADDP file for this model: every tensor of the encoder and the decoder, nothing else it
# does not have (the frozen parts come from their own files)
ENCODER_AND_DECODER = LoadPolicy(required=r'^(backbone|neck)\.', unexpected=False)


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
                 data_preprocessor: Optional[Dict] = PIXELS_0_1,
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
            raise UsageError(
                f'the tokenizer turns {tuple(self.backbone.img_size)} images into a {grid} token '
                f'grid but the backbone into a {tuple(self.backbone.patch_resolution)} patch grid: '
                f'they must coincide (backbone patch_size = tokenizer downsampling '
                f'{tokenizer.downsample_factor})')
        derived = dict(embed_dim=self.backbone.embed_dims, num_patches=grid[0] * grid[1],
                       grid_size=grid, codebook_size=tokenizer.n_embed)
        neck = dict(neck)
        for key, value in derived.items():
            given = neck.setdefault(key, value)
            if (tuple(given) if isinstance(given, (list, tuple)) else given) != value:
                raise UsageError(f'model.neck.{key}={neck[key]} but the backbone / tokenizer give '
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
        """Load encoder + decoder (every one of their tensors) from a released ADDP checkpoint or
        one of ours (a file, or a checkpoint already read, called ``name`` in messages); the
        frozen parts keep their own weights."""
        key = 'model.init_cfg.checkpoint'
        state = unwrap_state_dict(checkpoint if isinstance(checkpoint, dict)
                                  else read_checkpoint(checkpoint, key))
        name = name or (checkpoint if isinstance(checkpoint, str) else 'the given checkpoint')
        require_full_addp_checkpoint(state, name)
        load_weights(self, state, addp_state_dict, ENCODER_AND_DECODER, key,
                     name=name).log('ADDP')

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
        mask, num_masked = noised['mask_t'], noised['num_masked']
        if num_masked is None:  # masks given by the caller: counted here (a device read)
            num_masked = int(mask[0].bool().sum())
        # only the masked grid positions are scored: the loss reads nothing else
        positions = masked_positions(mask, num_masked)
        logits = self.neck(features, noised['indices'], mask, mask.shape[1] - num_masked,
                           positions=positions)
        return dict(loss=self.head(logits, noised['target'], positions))

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.encode(inputs)
        if mode == 'predict':
            raise UsageError("ADDP has no 'predict' mode: generate images with tools/generate.py")
        raise ValueError(f'ADDP.forward: unknown mode {mode!r}')
