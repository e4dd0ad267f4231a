"""The masking rules shared by the pretraining step, its decoder and loss, and the token
predictor's training: one place for each."""
import math
from typing import Sequence, Tuple

import torch
from scipy import stats

__all__ = ['truncated_normal', 'num_masked', 'masks_from_noise', 'masked_positions']


def truncated_normal(low: float, high: float, mu: float, std: float):
    """The mask-ratio distribution of MAGE / ADDP: a normal of mean ``mu`` and standard deviation
    ``std`` truncated to ``[low, high]`` (a frozen ``scipy.stats`` distribution)."""
    return stats.truncnorm((low - mu) / std, (high - mu) / std, loc=mu, scale=std)


def num_masked(num_tokens: int, ratio) -> int:
    """``ceil(num_tokens * ratio)``, the product taken in float32 as in the releases."""
    prod = torch.tensor(float(num_tokens), dtype=torch.float32) * torch.as_tensor(
        ratio, dtype=torch.float32)
    return int(math.ceil(float(prod)))


def masks_from_noise(noise: torch.Tensor, counts: Sequence[int]) -> Tuple[torch.Tensor, ...]:
    """For each count ``n``, the ``B x N`` mask (float 0/1, 1 = masked) of the ``n`` positions of
    smallest ``noise`` in each row. All come from one ranking of the same noise (ties broken by
    position), so a mask with more positions contains every one with fewer."""
    rank = noise.argsort(dim=1, stable=True).argsort(dim=1)
    return tuple((rank < n).to(noise.dtype) for n in counts)


def masked_positions(mask: torch.Tensor, count: int) -> torch.Tensor:
    """The indices ``B x count`` of the masked positions of ``mask`` (``B x N``, ``count`` masked
    in every row), in position order: a stable sort puts the visible positions first, in order,
    then the masked ones. ``count`` is passed in (a host number), so nothing is read back from
    the device."""
    order = mask.bool().to(torch.uint8).argsort(dim=1, stable=True)
    return order[:, order.shape[1] - count:]
