"""ADDP's pretraining loss: soft-target cross-entropy on the masked grid positions."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS


def soft_target_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor,
                              label_smoothing: float = 0.1) -> torch.Tensor:
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


@MODELS.register_module()
class ADDPSoftTargetLoss(nn.Module):
    """:func:`soft_target_cross_entropy` times ``loss_weight``."""

    def __init__(self, label_smoothing: float = 0.1, loss_weight: float = 1.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, target_probs: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * soft_target_cross_entropy(
            logits, target_probs, mask, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f'label_smoothing={self.label_smoothing}, loss_weight={self.loss_weight}'
