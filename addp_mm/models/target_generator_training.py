"""Older import path (``addp_mm.models.target_generator_training``), kept for one release: the
two trainers are algorithms now (``addp_mm.models.algorithms``)."""
from .algorithms import MAGETokenTrainer, VQAutoencoder  # noqa: F401
