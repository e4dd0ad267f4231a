"""ADDP's pretraining loss: soft-target cross-entropy on the masked grid positions."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS


def soft_target_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor,
                              positions: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy of the decoder's logits at some grid positions against the token predictor's
    distribution there, averaged over them.

    Args:
        logits: ``B x M x vocab``: the logits of the ``M`` positions (``ADDPDecoder(...,
            positions=positions)``).
        target_probs: the target distribution over the ``K <= vocab`` codes at every grid
            position, ``B x K x h x w`` (the release's layout, ``N = h * w``) or ``B x N x K``;
            zero-padded to the vocabulary.
        positions: ``B x M`` grid indices of the scored positions (the masked ones).
        label_smoothing: as ``torch.nn.CrossEntropyLoss(label_smoothing=...)``: the target becomes
            ``(1 - eps) * p + eps / vocab``.

    Returns:
        scalar float32 loss (0 when ``M`` is 0).
    """
    if target_probs.dim() == 4:
        target_probs = target_probs.flatten(2).transpose(1, 2)
    if target_probs.dim() != 3:
        raise ValueError(f'target_probs must be B x K x h x w or B x N x K, got '
                         f'{tuple(target_probs.shape)}')
    B, N, K = target_probs.shape
    if logits.dim() != 3 or logits.shape[0] != B or tuple(positions.shape) != tuple(logits.shape[:2]):
        raise ValueError(f'logits must be B x M x vocab at the B x M positions, got logits '
                         f'{tuple(logits.shape)} and positions {tuple(positions.shape)}')
    M, V = logits.shape[1:]
    if K > V:
        raise ValueError(f'target has {K} classes, more than the {V} logits')
    if M == 0:
        return logits.float().sum() * 0.
    target = target_probs.float().gather(1, positions.unsqueeze(-1).expand(-1, -1, K))
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
                positions: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * soft_target_cross_entropy(
            logits, target_probs, positions, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f'label_smoothing={self.label_smoothing}, loss_weight={self.loss_weight}'
