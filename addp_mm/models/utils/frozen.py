"""Frozen parts of a model (a tokenizer, a token predictor): their weights come from their own
files, so the model's checkpoints leave them out and a load without them keeps them."""
from typing import Sequence

import torch.nn as nn

from addp_mm.compat import register_load_state_dict_pre_hook, register_state_dict_post_hook

__all__ = ['keep_out_of_state_dict']


def keep_out_of_state_dict(module: nn.Module, names: Sequence[str]) -> None:
    """Leave ``module``'s children ``names`` out of every ``state_dict`` of ``module`` (and of a
    model that holds it), and let a load without their keys keep their current weights.

    The children's own ``state_dict()`` still holds them (what an export of a part writes)."""
    names = tuple(names)

    def leave_out(mod, state, prefix, local_metadata):
        for name in names:
            for key in [k for k in state if k.startswith(f'{prefix}{name}.')]:
                del state[key]

    def keep(mod, state, prefix, *args):
        for name in names:
            child = getattr(mod, name, None)
            if child is not None:
                for key, value in child.state_dict(prefix=f'{prefix}{name}.').items():
                    state.setdefault(key, value)

    register_state_dict_post_hook(module, leave_out)
    register_load_state_dict_pre_hook(module, keep)
