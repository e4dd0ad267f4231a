"""ADDP's pretraining loss: soft-target cross-entropy on the masked grid positions."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS

from .decoder import masked_positions


def soft_target_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor,
                              label_smoothing: float = 0.1, masked_only: bool = False) -> torch.Tensor:
    """Cross-entropy against the token predictor's distribution, averaged over masked positions.

    Args:
        logits: decoder output ``B x S x vocab`` with the cls slot at 0 and the ``N`` grid
            positions at ``1..N`` (``S >= 1 + N``; appended tokens after them are ignored).
        target_probs: target distribution over the ``K <= vocab`` codes, either
            ``B x K x h x w`` (the release's layout, ``N = h * w``) or ``B x N x K``. It is
            zero-padded to the vocabulary.
        mask: ``B x N`` (or ``B x (1+N)`` with the cls column first), 1 = masked; only masked
            positions count.
        label_smoothing: as ``torch.nn.CrossEntropyLoss(label_smoothing=...)``: the target becomes
            ``(1 - eps) * p + eps / vocab``.
        masked_only: ``logits`` hold only the ``M`` masked grid positions, ``B x M x vocab`` in
            position order (``ADDPDecoder(..., masked_only=True)``): the same loss without
            scoring the positions it does not read.

    Returns:
        scalar float32 loss (0 when nothing is masked).
    """
    if target_probs.dim() == 4:
        target_probs = target_probs.flatten(2).transpose(1, 2)
    if target_probs.dim() != 3:
        raise ValueError(f'target_probs must be B x K x h x w or B x N x K, got '
                         f'{tuple(target_probs.shape)}')
    B, N, K = target_probs.shape
    V = logits.shape[-1]
    if masked_only:
        return _masked_soft_target_cross_entropy(logits, target_probs, mask, label_smoothing)
    if logits.dim() != 3 or logits.shape[0] != B or logits.shape[1] < N + 1:
        raise ValueError(f'logits must be B x (>= 1+N) x vocab = {B} x >={N + 1} x V with the cls '
                         f'slot first, got {tuple(logits.shape)}')
    if K > V:
        raise ValueError(f'target has {K} classes, more than the {V} logits')
    if mask.shape == (B, N + 1):
        mask = mask[:, 1:]
    if mask.shape != (B, N):
        raise ValueError(f'mask must be {B} x {N} (or {B} x {N + 1} with cls first), got '
                         f'{tuple(mask.shape)}')
    grid = logits[:, 1:1 + N].float().reshape(B * N, V)
    target = F.pad(target_probs.float(), (0, V - K)).reshape(B * N, V)
    per_pos = F.cross_entropy(grid, target, reduction='none', label_smoothing=label_smoothing)
    weight = mask.reshape(B * N).to(per_pos.dtype)
    return (per_pos * weight).sum() / weight.sum().clamp(min=1.)


def _masked_soft_target_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor,
                                      mask: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """:func:`soft_target_cross_entropy` from the logits of the masked positions only."""
    B, N, K = target_probs.shape
    if mask.shape == (B, N + 1):
        mask = mask[:, 1:]
    if mask.shape != (B, N):
        raise ValueError(f'mask must be {B} x {N} (or {B} x {N + 1} with cls first), got '
                         f'{tuple(mask.shape)}')
    if logits.dim() != 3 or logits.shape[0] != B or logits.shape[1] > N:
        raise ValueError(f'masked_only logits must be B x M x vocab with M <= {N} masked '
                         f'positions, got {tuple(logits.shape)}')
    M, V = logits.shape[1:]
    if K > V:
        raise ValueError(f'target has {K} classes, more than the {V} logits')
    if M == 0:
        return logits.float().sum() * 0.
    picked = masked_positions(mask, M)
    target = target_probs.float().gather(1, picked.unsqueeze(-1).expand(-1, -1, K))
    target = F.pad(target, (0, V - K)).reshape(B * M, V)
    return F.cross_entropy(logits.float().reshape(B * M, V), target,
                           label_smoothing=label_smoothing)


@MODELS.register_module()
class ADDPSoftTargetLoss(nn.Module):
    """:func:`soft_target_cross_entropy` times ``loss_weight``."""

    def __init__(self, label_smoothing: float = 0.1, loss_weight: float = 1.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, target_probs: torch.Tensor,
                mask: torch.Tensor, masked_only: bool = False) -> torch.Tensor:
        return self.loss_weight * soft_target_cross_entropy(
            logits, target_probs, mask, label_smoothing=self.label_smoothing,
            masked_only=masked_only)

    def extra_repr(self) -> str:
        return f'label_smoothing={self.label_smoothing}, loss_weight={self.loss_weight}'
