"""Training the target generators on your own images, in data-flow order: pixels ->
``VQAutoencoder`` (the ``VQGANTokenizer`` as a VQ autoencoder) -> codes -> ``MAGETokenTrainer``
(the ``MAGETokenPredictor`` with MAGE's masked-token objective). ``ExportPartHook``
(``addp_mm.engine.hooks``) writes each trained part in the format its loader reads."""
from .mage_token_trainer import MAGETokenTrainer
from .vq_autoencoder import VQAutoencoder

__all__ = ['VQAutoencoder', 'MAGETokenTrainer']
