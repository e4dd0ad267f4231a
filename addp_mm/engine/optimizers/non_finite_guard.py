"""One non-finite-loss policy that holds on every rank: skip the step everywhere or stop everywhere.

mmengine's ``MMDistributedDataParallel.train_step`` runs the forward pass, ``parse_losses`` and
then ``optim_wrapper.update_params(loss)`` itself (a model's own ``train_step`` is bypassed), so
the policy lives in the optimizer wrapper, which every path calls. A decision taken on one rank
alone would hang the others at the next collective (or let the ranks' weights drift apart), so
the ranks first agree: each one reports whether its loss is finite, one ``all_reduce`` combines
the reports, and all ranks then take the same branch.

- ``max_consecutive_skips=0`` (the fp32 default): the first non-finite loss stops training on
  every rank with :class:`NonFiniteLossError`; the checkpoints written so far are the last good
  ones.
- ``max_consecutive_skips=N > 0`` (the AMP default, 100): such a step is skipped on every rank
  (no backward pass, no optimizer step, the optimizer state is untouched), as the released
  implementation does under AMP; more than ``N`` skips in a row stop training as above. With
  gradient accumulation only the bad micro-batch is left out: the window's good ones still step
  at its end.

Cost: the decision needs the combined flag on the host, i.e. one device-to-host sync (plus one
tiny all-reduce) per step; ``check_grads=True`` adds a second one after the backward pass.
"""
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce, get_rank, get_world_size
from mmengine.logging import MessageHub, print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from addp_mm.errors import UsageError


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf in full precision: raised on every rank at once by
    :class:`NonFiniteGuardOptimWrapper`."""


class NonFiniteGuardMixin:
    """The policy, for any ``OptimWrapper`` subclass (see the module docstring)."""

    def _init_guard(self, max_consecutive_skips: int, check_grads: bool) -> None:
        if max_consecutive_skips is None or int(max_consecutive_skips) < 0:
            raise UsageError(f'max_consecutive_skips must be an int >= 0 (0: stop at the first '
                             f'non-finite loss), got {max_consecutive_skips!r}')
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.check_grads = bool(check_grads)
        self.consecutive_skips = 0
        self.total_skips = 0
        self._window_has_grads = False

    # ------------------------------------------------------------------ the agreement
    @staticmethod
    def _bad_ranks(values: List[torch.Tensor]) -> List[int]:
        """The ranks on which any of ``values`` is not finite (the same list on every rank)."""
        device = values[0].device
        bad = torch.zeros(get_world_size(), device=device)
        local = torch.stack([~torch.isfinite(v.detach()).all() for v in values]).any()
        bad[get_rank()] = local.to(bad.dtype)
        all_reduce(bad, op='sum')
        # the one host sync of the decision: the flags come to the host whole (a nonzero() on
        # the device would wait for it once more, for its output size)
        return [rank for rank, flag in enumerate(bad.tolist()) if flag != 0]

    def _on_non_finite(self, what: str, bad_ranks: List[int], value: Optional[torch.Tensor]) -> None:
        """All ranks call this with the same ``bad_ranks``: all skip or all raise."""
        iteration = MessageHub.get_current_instance().get_info('iter')
        where = f'at iteration {iteration + 1 if iteration is not None else "?"} on rank(s) {bad_ranks}'
        mine = f' (this rank: {float(value)})' if value is not None and get_rank() in bad_ranks else ''
        self.consecutive_skips += 1
        if self.consecutive_skips > self.max_consecutive_skips:
            budget = (f'{self.consecutive_skips} non-finite steps in a row, more than '
                      f'optim_wrapper.max_consecutive_skips={self.max_consecutive_skips}'
                      if self.max_consecutive_skips else 'optim_wrapper.max_consecutive_skips=0')
            raise NonFiniteLossError(
                f'the {what} is not finite {where}{mine}; {budget}. Training stopped on every rank; '
                'the last checkpoint written to the work dir is the last good one. Lower '
                'optim_wrapper.optimizer.lr, check the data and the frozen checkpoints, or allow '
                'skipping such steps with optim_wrapper.max_consecutive_skips=N (the AMP default).')
        self.total_skips += 1
        print_log(f'non-finite {what} {where}{mine}: step skipped on every rank '
                  f'({self.consecutive_skips} in a row, {self.total_skips} in total)',
                  logger='current', level=30)

    # ------------------------------------------------------------------ OptimWrapper API
    def update_params(self, loss: torch.Tensor, step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        bad = self._bad_ranks([loss])
        if bad:
            # no backward pass for this (micro-)batch; with gradient accumulation the window's
            # good micro-batches still step at its end
            self._on_non_finite('loss', bad, loss)
            self._inner_count += 1  # keeps gradient-accumulation windows aligned with iterations
            if self.should_update():
                if self._window_has_grads:
                    self._step_and_zero(step_kwargs, zero_kwargs)
                else:
                    self.optimizer.zero_grad(set_to_none=True)
            return
        self.backward(self.scale_loss(loss))
        self._window_has_grads = True
        if self.should_update():
            if self.check_grads:
                grads = [p.grad for g in self.optimizer.param_groups for p in g['params'] if p.grad is not None]
                bad = self._bad_ranks(grads) if grads else []
                if bad:
                    self._on_non_finite('gradient', bad, None)
                    self.optimizer.zero_grad(set_to_none=True)  # the whole window is dropped
                    self._window_has_grads = False
                    return
            self._step_and_zero(step_kwargs, zero_kwargs)
        self.consecutive_skips = 0

    def _step_and_zero(self, step_kwargs: Dict, zero_kwargs: Dict) -> None:
        self.step(**step_kwargs)
        self.zero_grad(**zero_kwargs)
        self._window_has_grads = False


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardOptimWrapper(NonFiniteGuardMixin, OptimWrapper):
    """mmengine's ``OptimWrapper`` with the all-rank non-finite policy (module docstring).

    Args:
        max_consecutive_skips (int): 0 (default): stop at the first non-finite loss; N > 0: skip
            such steps on every rank, stop after more than N in a row.
        check_grads (bool): also check the gradients after the backward pass (a second host
            sync per step).
        Other arguments: those of ``OptimWrapper``.
    """

    def __init__(self, *args, max_consecutive_skips: int = 0, check_grads: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_guard(max_consecutive_skips, check_grads)


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardAmpOptimWrapper(NonFiniteGuardMixin, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` with the all-rank non-finite policy; skips by default.

    A non-finite *loss* (fp16 overflow in the forward pass) is skipped on every rank, up to
    ``max_consecutive_skips`` (default 100, our choice: the release skips without a limit) in a
    row. Non-finite *gradients* are the loss scaler's business (it skips the step and lowers the
    scale, identically on every rank since DDP averages the gradients first), so
    ``check_grads`` is not offered here.
    """

    def __init__(self, *args, max_consecutive_skips: int = 100, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_guard(max_consecutive_skips, check_grads=False)
