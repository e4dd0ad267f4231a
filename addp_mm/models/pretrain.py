"""Older import path of the pretraining classes (``addp_mm.models.pretrain``), kept for one
release: they live in the folders of their roles now (``algorithms``, ``necks``, ``heads``,
``target_generators``)."""
from .algorithms import ADDP  # noqa: F401
from .heads import ADDPSoftTargetLoss, soft_target_cross_entropy  # noqa: F401
from .necks import ADDPDecoder  # noqa: F401
from .target_generators import ADDPNoiser, MaskDraw, MaskSchedule  # noqa: F401
from addp_mm.engine.optimizers.non_finite_guard import NonFiniteLossError  # noqa: F401,E402
