"""Stop a full-precision run whose loss is no longer finite (ADDP pretraining, as the release)."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS

from addp_mm.models.pretrain import NonFiniteLossError


def _uses_amp(optim_wrapper) -> bool:
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)
    wrappers = wrappers.values() if wrappers is not None else [optim_wrapper]
    return any(isinstance(w, AmpOptimWrapper) for w in wrappers)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """After each iteration, look at the loss the runner has already logged (a host value: this
    reads nothing from the device). Under AMP the gradient scaler has skipped the step: say so.
    In full precision raise :class:`NonFiniteLossError` before any checkpoint of this iteration
    is written, so the last checkpoint in the work dir is the last good one.

    ``ADDPPretrainRunner`` registers it; as a hook it acts the same under DDP (whose wrapper does
    not call the model's own ``train_step``).

    Args:
        key (str): the message-hub scalar to watch (``RuntimeInfoHook`` logs the step's ``loss``
            as ``'train/loss'``).
    """

    priority = 'ABOVE_NORMAL'  # after RuntimeInfoHook logs the loss, before CheckpointHook

    def __init__(self, key: str = 'train/loss'):
        self.key = key

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        history = runner.message_hub.log_scalars.get(self.key)
        if history is None:
            return
        loss = history.current()
        if loss == loss and abs(loss) != float('inf'):
            return
        if _uses_amp(runner.optim_wrapper):
            print_log(f'non-finite loss {loss} under AMP at iteration {runner.iter + 1}: the '
                      'gradient scaler skipped this step', logger='current', level=30)
            return
        raise NonFiniteLossError(
            f'the loss is {loss} (not finite) at iteration {runner.iter + 1} in full precision. '
            'Training stopped; the last checkpoint written to the work dir is the last good one. '
            'Lower optim_wrapper.optimizer.lr, check the tokenizer/token predictor checkpoints, '
            'or train with --amp (which skips such steps, as the release does).')
