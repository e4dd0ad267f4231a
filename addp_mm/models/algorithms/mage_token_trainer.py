"""``MAGETokenTrainer``: train the ``MAGETokenPredictor`` with MAGE's masked-token objective on the
codes of a frozen, trained tokenizer.

    pixels x -> frozen tokenizer.encode -> token ids (B x N)
    mask ratio r ~ truncnorm on [min_ratio, max_ratio] (mu, std), one per batch (MAGE's
        ``mask_ratio_generator``: min 0.5, max 1.0, mu 0.55, std 0.25)
    ceil(N * r) positions per sample masked (the smallest values of per-sample uniform noise)
    token predictor (encode + decode, the sampling path ADDP runs) -> codebook logits
    loss = cross-entropy with label smoothing 0.1 (MAGE) on the masked positions only

One difference from MAGE's training, said plainly: MAGE's encoder also *drops* ``ceil(N *
min_ratio)`` of the masked tokens (a speed-up); here every position is present as a mask id, which
is how the predictor is run when sampling and inside ADDP (``MAGETokenPredictor.encode``). The
parameters are the same, so the exported file loads with ``MAGETokenPredictor(checkpoint=...)``.

Logged: ``acc_masked`` (top-1 accuracy on the masked positions) and ``mask_ratio``.
The tokenizer is frozen here (no gradients, eval mode) and left out of this model's state dict;
it comes from its own file (``tokenizer.checkpoint``) again on resume.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from addp_mm.errors import UsageError

from ..target_generators.mage_token_predictor import fit_to_tokenizer
from ..utils.frozen import keep_out_of_state_dict
from ..utils.image import PIXELS_0_1
from ..layers.inference import optimize_for_inference
from ..utils.masking import masks_from_noise, truncated_normal

__all__ = ['MAGETokenTrainer']


@MODELS.register_module()
class MAGETokenTrainer(BaseModel):
    """Masked-token training of a ``MAGETokenPredictor`` on a frozen tokenizer's codes.

    Args:
        tokenizer (dict): the trained ``VQGANTokenizer`` (with its ``checkpoint``), frozen.
        token_predictor (dict): the ``MAGETokenPredictor``; ``codebook_size`` and ``grid_size``
            default to the tokenizer's codebook and its grid at ``tokenizer.resolution``.
        min_ratio, max_ratio, mu, std: MAGE's truncated-normal mask-ratio distribution.
        label_smoothing (float): MAGE's 0.1.
        inference_form (bool): run the frozen tokenizer in its inference form
            (:mod:`addp_mm.models.layers.inference`); ``False`` keeps the reference module.
        data_preprocessor (dict): uint8 BGR batches -> float RGB in [0, 1].
    """

    def __init__(self, tokenizer: Dict, token_predictor: Dict, min_ratio: float = 0.5,
                 max_ratio: float = 1.0, mu: float = 0.55, std: float = 0.25,
                 label_smoothing: float = 0.1, inference_form: bool = True,
                 data_preprocessor: Optional[Dict] = PIXELS_0_1,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0. < min_ratio <= max_ratio <= 1. or std <= 0:
            raise UsageError(f'need 0 < min_ratio <= max_ratio <= 1 and std > 0, got '
                             f'{min_ratio}, {max_ratio}, {std}')
        self.tokenizer = MODELS.build(tokenizer).requires_grad_(False)
        if inference_form:
            optimize_for_inference(self.tokenizer)
        self.token_predictor = MODELS.build(fit_to_tokenizer(token_predictor, self.tokenizer))
        self.min_ratio, self.max_ratio, self.mu, self.std = min_ratio, max_ratio, mu, std
        self.ratio_distribution = truncated_normal(min_ratio, max_ratio, mu, std)
        self.label_smoothing = float(label_smoothing)
        # the frozen tokenizer's weights live in their own file, not in this model's checkpoints
        keep_out_of_state_dict(self, ('tokenizer', ))

    def init_weights(self):
        super().init_weights()
        self.tokenizer.init_weights()
        self.token_predictor.init_weights()

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.train(False)  # frozen
        return self

    # ------------------------------------------------------------------ pieces
    def draw_ratio(self, generator: Optional[torch.Generator] = None) -> float:
        """One mask ratio from MAGE's truncated normal (host value, drawn with torch's RNG so that
        mmengine's seeding fixes it)."""
        u = float(torch.rand((), generator=generator))
        return float(self.ratio_distribution.ppf(u))

    def random_mask(self, batch: int, num_tokens: int, ratio: float,
                    device: torch.device) -> torch.Tensor:
        """Bool B x N mask with ``ceil(N * ratio)`` True positions per row (MAGE's count)."""
        num_masked = min(num_tokens, max(1, int(math.ceil(num_tokens * ratio))))
        noise = torch.rand(batch, num_tokens, device=device)
        return masks_from_noise(noise, (num_masked, ))[0].bool()

    @torch.no_grad()
    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.encode(inputs)[1]

    def masked_logits(self, indices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tp = self.token_predictor
        return tp.decode(tp.encode(indices, mask), mask)

    def loss(self, inputs: torch.Tensor, data_samples=None,
             mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        indices = self.tokens(inputs)
        if mask is None:
            ratio = self.draw_ratio()
            mask = self.random_mask(indices.shape[0], indices.shape[1], ratio, indices.device)
        else:
            ratio = float(mask.float().mean())
        logits = self.masked_logits(indices, mask).float()
        ce = F.cross_entropy(logits.flatten(0, 1), indices.flatten(), reduction='none',
                             label_smoothing=self.label_smoothing).view_as(mask)
        m = mask.float()
        loss = (ce * m).sum() / m.sum()
        with torch.no_grad():
            acc = ((logits.argmax(-1) == indices).float() * m).sum() / m.sum()
        return dict(loss=loss, acc_masked=acc, mask_ratio=logits.new_tensor(ratio))

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('tensor', 'predict'):
            indices = self.tokens(inputs)
            return indices
        raise ValueError(f'MAGETokenTrainer.forward: unknown mode {mode!r}')
