"""Models, in data-flow order: the shared ViT layers -> the frozen target generators (VQGAN
tokenizer, MAGE token predictor) -> their training on your own images -> the pretraining
algorithm (noiser, decoder, loss, ADDP) -> the encoder as a backbone -> necks; generation samples
with the pretrained model; ``utils`` reads and converts checkpoints. Importing registers
everything."""
from .layers import *  # noqa: F401,F403
from .target_generators import *  # noqa: F401,F403
from .target_generator_training import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .pretrain import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .generation import *  # noqa: F401,F403
