"""Models, in data-flow order: tokenizers -> pretraining algorithm -> backbone -> necks
(generation samples with the pretrained model). Importing registers everything."""
from .layers import *  # noqa: F401,F403
from .tokenizers import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .pretrain import *  # noqa: F401,F403
try:  # TEMPORARY-UNTIL-MMCV-BUILT
    from .necks import *  # noqa: F401,F403
except ImportError:  # TEMPORARY-UNTIL-MMCV-BUILT
    pass
