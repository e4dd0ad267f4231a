"""Faithfulness checks against a folder of reference outputs written by the released ADDP code.

A reference folder (passed as an argument; any variant of the layout) holds release-format
checkpoints and a ``vectors_<variant>.pt`` file with the outputs the released implementation
computed for them. Each check module registers functions that rebuild our models from those
checkpoints (through the library's checkpoint layer and the registries), recompute what the vectors
record and return :class:`Row` objects.

``tools/verify_reference.py DIR`` prints the rows; the test suite asserts that they all pass.
"""
from .core import ReferenceDir, Row, compare, register_check, run_checks

# importing the check modules registers their rows, in the order printed
from . import backbone  # noqa: F401,E402
from . import token_predictor  # noqa: F401,E402
from . import tokenizers  # noqa: F401,E402
from . import pretrain  # noqa: F401,E402
from . import generation  # noqa: F401,E402

__all__ = ['ReferenceDir', 'Row', 'compare', 'register_check', 'run_checks']
