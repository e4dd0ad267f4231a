"""Algorithms (what a config's ``model`` is): ``ADDP`` pretraining, and the training of its frozen
parts on your own images, ``VQAutoencoder`` (the tokenizer) and ``MAGETokenTrainer`` (the token
predictor)."""
from .addp import ADDP
from .mage_token_trainer import MAGETokenTrainer
from .vq_autoencoder import VQAutoencoder

__all__ = ['ADDP', 'VQAutoencoder', 'MAGETokenTrainer']
