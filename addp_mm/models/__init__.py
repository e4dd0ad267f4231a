"""Models by role, as in mmpretrain: ``layers`` (the one ViT, the VQGAN's layers, the inference
switch) -> ``target_generators`` (the frozen tokenizer, token predictor, mask schedule and the
noiser that chains them) -> ``backbones`` (``ADDPViT``) -> ``necks`` (``ADDPDecoder``,
``SimpleFPN``) -> ``heads`` (the soft-target loss) -> ``algorithms`` (``ADDP``, and the training
of the frozen parts); ``generation`` samples with a pretrained ``ADDP``; ``utils`` holds
precision, masking, frozen-part and image helpers. Importing registers everything."""
from .layers import *  # noqa: F401,F403
from .target_generators import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .algorithms import *  # noqa: F401,F403
from .generation import *  # noqa: F401,F403
