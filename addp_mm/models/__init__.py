"""Models, in data-flow order: tokenizers -> pretraining algorithm -> backbone -> necks
(generation samples with the pretrained model). Importing registers everything."""
from .layers import *  # noqa: F401,F403
from .tokenizers import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .pretrain import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .generation import *  # noqa: F401,F403
