"""Heads and losses: ``ADDPSoftTargetLoss``, ADDP's soft-target cross-entropy on the masked grid
positions."""
from .addp_soft_target_loss import ADDPSoftTargetLoss, soft_target_cross_entropy

__all__ = ['ADDPSoftTargetLoss', 'soft_target_cross_entropy']
