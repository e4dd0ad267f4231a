"""Which diffusion step a pretraining batch is trained on, and the two nested masks it needs.

ADDP discretises the cosine schedule ``r_k = cos(pi/2 * k / num_steps)`` and keeps the ratios in
``[min_ratio, max_ratio)``. A batch draws one of them (``r_t``) with probability proportional to a
truncated-normal density, and a more masked ratio ``r_{t+1}`` a few steps further along the kept
list. ``mask_t`` hides ``ceil(N * r_t)`` tokens and ``mask_t_next`` hides ``ceil(N * r_{t+1})``,
both taken as the smallest values of the same per-sample noise, so ``mask_t_next`` contains
``mask_t``.
"""
import math
from typing import NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.registry import TASK_UTILS

from addp_mm.errors import UsageError

from ..utils.masking import masks_from_noise, num_masked, truncated_normal


class MaskDraw(NamedTuple):
    """One draw of :meth:`MaskSchedule.draw`: the two masks (float 0/1, 1 = masked) and how many
    positions each row of them masks (host integers, so no device read is needed)."""
    mask_t: torch.Tensor
    mask_next: torch.Tensor
    num_masked_t: int
    num_masked_next: int


@TASK_UTILS.register_module()
class MaskSchedule:
    """The release's mask-ratio distribution and its two-mask sampler.

    Args:
        num_steps: number of steps the cosine schedule is discretised into (``k = 0..num_steps``).
        min_ratio, max_ratio: kept ratios satisfy ``min_ratio <= r < max_ratio``.
        mu, std: location and scale of the truncated normal on ``[min_ratio, max_ratio]`` that
            weights the kept ratios.
        max_step_gap: the next state is ``1..max_step_gap`` (uniform) positions further along the
            ascending ratio list, capped at the last (most masked) ratio.

    Attributes:
        ratios: ``float32`` tensor of kept ratios, ascending (computed in float32 as the release).
        probs: ``float64`` tensor, the normalised truncated-normal pdf at ``ratios``.
    """

    def __init__(self, num_steps: int = 100, min_ratio: float = 0.5, max_ratio: float = 1.0,
                 mu: float = 0.55, std: float = 0.25, max_step_gap: int = 5):
        if num_steps < 1:
            raise UsageError(f'num_steps must be >= 1, got {num_steps}')
        if not 0. <= min_ratio < max_ratio <= 1.:
            raise UsageError(f'need 0 <= min_ratio < max_ratio <= 1, got {min_ratio}, {max_ratio}')
        if std <= 0:
            raise UsageError(f'std must be positive, got {std}')
        if max_step_gap < 1:
            raise UsageError(f'max_step_gap must be >= 1, got {max_step_gap}')
        self.num_steps = num_steps
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self.mu = mu
        self.std = std
        self.max_step_gap = max_step_gap

        # float32 throughout, like the release (its ratios are a float32 tensor); host tables
        t = torch.arange(num_steps + 1, dtype=torch.float32, device='cpu') / num_steps
        cosine = torch.cos(math.pi / 2. * t).clamp(0., 1.)
        kept = cosine[(cosine >= min_ratio) & (cosine < max_ratio)]
        if kept.numel() == 0:
            raise UsageError(f'no cosine-schedule ratio with {num_steps} steps lies in '
                             f'[{min_ratio}, {max_ratio})')
        self.ratios = kept.flip(0).contiguous()

        density = truncated_normal(min_ratio, max_ratio, mu, std)
        pdf = torch.from_numpy(np.asarray(density.pdf(self.ratios.numpy()), dtype=np.float64))
        self.probs = pdf / pdf.sum()

    def __len__(self) -> int:
        return self.ratios.numel()

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_steps={self.num_steps}, min_ratio={self.min_ratio}, '
                f'max_ratio={self.max_ratio}, mu={self.mu}, std={self.std}, '
                f'max_step_gap={self.max_step_gap}; {len(self)} ratios)')

    # ------------------------------------------------------------------------------------------
    def sample_steps(self, generator: Optional[torch.Generator] = None) -> Tuple[int, int]:
        """Indices into :attr:`ratios` of the current and the next (more masked) state.

        Drawn on the host: with ``generator`` when it is a CPU generator, otherwise (``None`` or a
        CUDA generator) with torch's default CPU generator, which ``torch.manual_seed`` (and
        mmengine's ``randomness.seed``) seeds.
        """
        if generator is not None and generator.device.type != 'cpu':
            generator = None
        i = int(torch.multinomial(self.probs, 1, generator=generator))
        gap = int(torch.randint(1, self.max_step_gap + 1, (1,), generator=generator))
        return i, min(i + gap, len(self) - 1)

    def num_masked(self, num_tokens: int, step: int) -> int:
        """``ceil(num_tokens * ratios[step])``, the product taken in float32 as in the release."""
        return num_masked(num_tokens, self.ratios[step])

    def draw(self, batch_size: int, num_tokens: int, generator: Optional[torch.Generator] = None,
             device: Optional[Union[str, torch.device]] = None) -> MaskDraw:
        """Draw ``mask_t`` and ``mask_t_next`` (``batch_size x num_tokens``) and their counts.

        One step (hence one pair of counts) for the whole batch, drawn on the host
        (:meth:`sample_steps`); one uniform noise per sample, drawn with ``generator`` on its
        device when given, else with the global RNG on ``device``. The masks are returned on
        ``device`` (default: where the noise was drawn).
        """
        i, j = self.sample_steps(generator)
        n_t, n_next = self.num_masked(num_tokens, i), self.num_masked(num_tokens, j)
        noise_device = generator.device if generator is not None else device
        noise = torch.rand(batch_size, num_tokens, generator=generator, device=noise_device)
        mask_t, mask_next = masks_from_noise(noise, (n_t, n_next))
        if device is not None:
            mask_t, mask_next = mask_t.to(device), mask_next.to(device)
        return MaskDraw(mask_t, mask_next, n_t, n_next)

    def sample(self, batch_size: int, num_tokens: int, generator: Optional[torch.Generator] = None,
               device: Optional[Union[str, torch.device]] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mask_t, mask_t_next)`` of :meth:`draw`, each ``batch_size x num_tokens`` float 0/1."""
        drawn = self.draw(batch_size, num_tokens, generator, device)
        return drawn.mask_t, drawn.mask_next
