"""The ADDP pretraining algorithm (spec section 2) as an mmengine ``BaseModel``.

    frozen VQ tokenizer ──> tokens z0, idx0
    mask schedule ─────────> mask_t ⊂ mask_{t+1}
    frozen token predictor > soft tokens at mask_{t+1}, targets q at mask_t
    tokenizer.decode ──────> pixels x_t of step t
    backbone (ADDPViT, pre-norm) on x_t ─> neck (ADDPDecoder) with idx0 visible ─> head (loss vs q)

The frozen parts are built from their own checkpoint files, kept in eval mode without gradients,
left out of the optimizer and out of this model's ``state_dict`` (so they are not saved; they are
rebuilt from their files on resume).
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import MODELS, TASK_UTILS

from ..utils.checkpoint import (WHERE_TO_GET, encoder_state_dict, load_checkpoint_file,
                                require_full_addp_checkpoint, unwrap_state_dict)
from .decoder import release_decoder_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FROZEN_PARTS = ('tokenizer', 'token_predictor')


class NonFiniteLossError(RuntimeError):
    """The pretraining loss became NaN/inf in full precision."""


@MODELS.register_module()
class ADDP(BaseModel):
    """Alternating Denoising Diffusion Process pretraining.

    Args:
        backbone (dict): the pixel encoder, ``ADDPViT`` with ``pre_norm=True``, ``out_type='raw'``
            and ``final_norm=True`` (the release's encoder).
        neck (dict): the token decoder, ``ADDPDecoder``.
        head (dict): the loss, ``ADDPSoftTargetLoss``.
        tokenizer (dict): the frozen ``VQGANTokenizer`` (with its ``checkpoint``).
        token_predictor (dict, optional): the frozen ``MAGETokenPredictor`` (with its
            ``checkpoint``); only training needs it, generation does not.
        mask_schedule (dict): ``MaskSchedule`` (``TASK_UTILS``).
        data_preprocessor (dict): turns uint8 BGR batches into float RGB in [0, 1].
    """

    def __init__(self,
                 backbone: Dict,
                 neck: Dict,
                 head: Dict,
                 tokenizer: Dict,
                 token_predictor: Optional[Dict] = None,
                 mask_schedule: Dict = dict(type='MaskSchedule'),
                 data_preprocessor: Optional[Dict] = dict(
                     type='ImgDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=True),
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.head = MODELS.build(head)
        self.tokenizer = MODELS.build(tokenizer)
        self.token_predictor = MODELS.build(token_predictor) if token_predictor is not None else None
        self.mask_schedule = TASK_UTILS.build(mask_schedule)
        self.register_buffer('pixel_mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # frozen parts: not saved, and their absence is fine when loading our own checkpoints
        self._register_state_dict_hook(_drop_frozen_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_frozen_keys)

    # ------------------------------------------------------------------ frozen parts
    def train(self, mode: bool = True):
        super().train(mode)
        for name in FROZEN_PARTS:
            part = getattr(self, name, None)
            if part is not None:
                part.eval()
        return self

    def init_weights(self):
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            for module in (self.backbone, self.neck):
                if hasattr(module, 'init_weights'):
                    module.init_weights()
            self.load_addp_checkpoint(self.init_cfg['checkpoint'])
        else:
            super().init_weights()
        # our BaseModule init_cfg must never touch the frozen, loaded parts
        for name in FROZEN_PARTS:
            part = getattr(self, name, None)
            if part is not None:
                part.requires_grad_(False)

    def load_addp_checkpoint(self, path: str) -> None:
        """Load encoder + decoder from a released ADDP checkpoint or one of ours (strict on both)."""
        state = unwrap_state_dict(load_checkpoint_file(path, 'ADDP checkpoint', WHERE_TO_GET['addp']))
        require_full_addp_checkpoint(state, path)
        state = addp_state_dict(state)
        for name in ('backbone', 'neck'):
            part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + '.')}
            if not part:
                raise ValueError(f'{path}: no {name} weights found (is it an ADDP checkpoint?)')
            part = getattr(self, name).adapt_state_dict(part) if name == 'backbone' else part
            getattr(self, name).load_state_dict(part, strict=True)
        print_log(f'ADDP: loaded encoder and decoder from {path}', logger='current')

    # ------------------------------------------------------------------ the pieces of a step
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """The encoder on pixels in [0, 1] (clamped, ImageNet-normalised): ``B x (1+N) x C``."""
        x = (pixels.clamp(0, 1) - self.pixel_mean) / self.pixel_std
        return self.backbone(x)[-1]

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode(inputs)

    def decode_tokens(self, enc_out: torch.Tensor, indices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``B x (1+N+V) x vocab`` (``V`` visible tokens appended)."""
        return self.neck(enc_out, indices, mask)

    @torch.no_grad()
    def noisy_pixels(self, inputs: torch.Tensor, mask_t: Optional[torch.Tensor] = None,
                     mask_next: Optional[torch.Tensor] = None
                     ) -> Dict[str, torch.Tensor]:
        """Spec 2.1-2.4: tokens of ``inputs``, masks, the token predictor's targets and the
        pixels ``x_t`` of step t. Masks are drawn from the schedule unless given."""
        if self.token_predictor is None:
            raise RuntimeError('ADDP.token_predictor is None: training needs the frozen MAGE token '
                               'predictor (model.token_predictor with its checkpoint)')
        z0, idx0 = self.tokenizer.encode(inputs)
        B, N = idx0.shape
        if mask_t is None or mask_next is None:
            mask_t, mask_next = self.mask_schedule.sample(B, N, device=inputs.device)
        probs_t, probs_next = self.token_predictor.predict(idx0, [mask_t, mask_next])
        soft = self.tokenizer.soft_embed(probs_next.to(z0.dtype))
        hide = mask_t.bool().view(B, 1, *z0.shape[2:])
        z_t = torch.where(hide, soft, z0)
        x_t = self.tokenizer.decode(z_t)
        return dict(indices=idx0, z0=z0, mask_t=mask_t, mask_next=mask_next, target=probs_t,
                    z_t=z_t, x_t=x_t)

    # ------------------------------------------------------------------ BaseModel API
    def loss(self, inputs: torch.Tensor, data_samples=None, mask_t: Optional[torch.Tensor] = None,
             mask_next: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        state = self.noisy_pixels(inputs, mask_t, mask_next)
        enc = self.encode(state['x_t'])
        logits = self.decode_tokens(enc, state['indices'], state['mask_t'])
        loss = self.head(logits, state['target'], state['mask_t'])
        return dict(loss=loss)

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.encode(inputs)
        if mode == 'predict':
            raise RuntimeError("ADDP has no 'predict' mode: generate images with tools/generate.py")
        raise ValueError(f'ADDP.forward: unknown mode {mode!r}')

    def train_step(self, data, optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        """mmengine's train step, plus the release's handling of a non-finite loss: under AMP the
        step is skipped; in full precision training stops with a clear error (the checkpoints
        saved so far are the last good ones)."""
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        parsed, log_vars = self.parse_losses(losses)
        if not torch.isfinite(parsed).all():
            if isinstance(optim_wrapper, AmpOptimWrapper):
                print_log(f'ADDP: non-finite loss {float(parsed)} under AMP: skipping this step',
                          logger='current', level=30)
                optim_wrapper.zero_grad()
                return log_vars
            raise NonFiniteLossError(
                f'ADDP: the loss is {float(parsed)} (not finite) in full precision. Training '
                'stopped; the last checkpoint written to the work dir is the last good one. Lower '
                'optim_wrapper.optimizer.lr, check the tokenizer/token predictor checkpoints, or '
                'train with --amp (which skips such steps, as the release does).')
        optim_wrapper.update_params(parsed)
        return log_vars

    def frozen_parameters(self) -> List[nn.Parameter]:
        return [p for name in FROZEN_PARTS if getattr(self, name, None) is not None
                for p in getattr(self, name).parameters()]


def addp_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An ADDP state dict in our names (``backbone.*``, ``neck.*``, ``head.*``) from ours or from
    the release's (encoder keys, ``tokenizer_norm``, ``decoder_*``, ``token_emb``, ``mlm_layer``).
    Frozen parts (``vqgan.*``, ``token_predictor.*``, ``tokenizer.*``) are left out: they load from
    their own files."""
    if any(k.startswith('backbone.') for k in state):
        return {k: v for k, v in state.items() if k.startswith(('backbone.', 'neck.', 'head.'))}
    encoder, _, _ = encoder_state_dict(state)
    out = {f'backbone.{k}': v for k, v in encoder.items() if k != 'fc_norm'}
    out.update({f'neck.{k}': v for k, v in release_decoder_state_dict(state).items()})
    return out


def _drop_frozen_keys(module, state_dict, prefix, local_metadata):
    for key in list(state_dict):
        rest = key[len(prefix):]
        if rest.startswith(tuple(f'{name}.' for name in FROZEN_PARTS)):
            del state_dict[key]
    return state_dict


def _ignore_missing_frozen_keys(module, incompatible_keys):
    missing = incompatible_keys.missing_keys
    for key in list(missing):
        if any(f'{name}.' in key for name in FROZEN_PARTS):
            missing.remove(key)
