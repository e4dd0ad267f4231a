"""``CheckedCheckpointLoad``: what ``load_from``, ``--resume`` and ``tools/test.py CHECKPOINT`` read
goes through our checkpoint layer, not mmengine's non-strict loader.

mmengine's ``Runner.load_checkpoint`` loads with ``strict=False`` and only warns: a released
checkpoint (other key names) or a file of another architecture leaves a random model. Mixed into
the runner by :func:`addp_mm.engine.runner_factory.build_runner` (``tools/train.py``, ``tools/test.py``),
``load_checkpoint`` here

1. reads the file with :func:`read_checkpoint` (weights only, our allow-list; a file holding any
   other pickled global is refused, naming it and ``$ADDP_TRUSTED_CHECKPOINTS``);
2. loads it with :func:`~addp_mm.checkpoint.load_weights`, converted to the model's key names by
   :func:`~addp_mm.checkpoint.model_state_dict` (released fine-tuning classifier, released / our
   pretraining file, any ADDP encoder, or one of our checkpoints as saved; the models' pre-hooks
   resize position and relative-position tables): evaluation (``test``/``val``) and resume need
   every tensor of the model (``COMPLETE``); ``load_from`` for training needs at least half of
   the file's tensors to fit (``PARTIAL``: an encoder-only file for a detector is fine) and logs
   what is left initialised. Anything else is a ``CheckpointMismatchError`` naming the file, the
   keys and, for a file of another kind, which file to give.

``--resume`` of a file that is not a training checkpoint (no ``meta`` / ``message_hub``, e.g. a
released file) is refused, naming what is missing.
"""
from typing import Mapping

from mmengine.model import BaseTTAModel, is_model_wrapper

from addp_mm.checkpoint import (COMPLETE, PARTIAL, CheckpointMismatchError, LoadReport,
                                load_weights, model_state_dict, read_checkpoint, summarise_keys)

# what ``Runner.resume`` reads besides the weights
RESUME_KEYS = ('meta', 'state_dict', 'message_hub')


class CheckedCheckpointLoad:
    """Runner mixin (see the module doc)."""

    # loading for: 'load_from' (training init), 'resume', 'test' (test / val without training)
    _load_purpose = 'load_from'
    # load_from for training: the least fraction of the file's tensors that must fit the model
    min_loaded_fraction = 0.5

    def test(self):
        self._load_purpose = 'test'
        return super().test()

    def val(self):
        self._load_purpose = 'test'
        return super().val()

    def resume(self, filename, *args, **kwargs):
        previous, self._load_purpose = self._load_purpose, 'resume'
        spans = [(s, s.begin, s.end) for s in _schedulers(getattr(self, 'param_schedulers', None))]
        try:
            result = super().resume(filename, *args, **kwargs)
        finally:
            self._load_purpose = previous
        # mmengine restores each scheduler's span from the checkpoint, and a span left open in the
        # config was closed at the max_epochs / max_iters of the run that wrote it: a run resumed
        # with more epochs would keep the last lr (flat) past the old end. The span is this run's.
        for scheduler, begin, end in spans:
            if (scheduler.begin, scheduler.end) != (begin, end):
                self.logger.info(f'{type(scheduler).__name__}: span [{begin}, {end}) of this run '
                                 f'(the checkpoint had [{scheduler.begin}, {scheduler.end}))')
                scheduler.begin, scheduler.end = begin, end
        return result

    def load_checkpoint(self, filename, map_location='cpu', strict=False, revise_keys=None):
        purpose = self._load_purpose
        checkpoint = dict(read_checkpoint(filename, KEYS[purpose]))
        if purpose == 'resume':
            missing = [k for k in RESUME_KEYS if k not in checkpoint]
            if missing:
                raise CheckpointMismatchError(
                    f'--resume {filename}: not a training checkpoint (it has no {missing}; keys: '
                    f'{summarise_keys(sorted(checkpoint))}). Resume from a checkpoint a training '
                    'run wrote (work_dirs/<config name>/iter_N.pth or epoch_N.pth); to start from '
                    'released weights use --cfg-options load_from=FILE or --pretrained FILE.')
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        if isinstance(model, BaseTTAModel):  # --tta: the checkpoint is the wrapped model's
            model = model.module
        report = load_checked(model, checkpoint, filename, purpose, strict)
        self._has_loaded = True
        self.logger.info(report.summary(type(model).__name__))
        return checkpoint


# how the command line / config names the file, by purpose
KEYS = {'load_from': 'load_from', 'resume': '--resume', 'test': 'CHECKPOINT'}
# what to give instead, when a file of another kind was given
FIXES = {
    'load_from': '',
    'resume': 'resume from a checkpoint a training of this config wrote',
    'test': 'give the checkpoint a training of this config wrote (work_dirs/<config name>/'
            'epoch_N.pth or iter_N.pth); to fine-tune from this file: tools/train.py CONFIG '
            '--pretrained FILE',
}


def load_checked(model, checkpoint: Mapping, filename, purpose: str = 'test',
                 strict: bool = False) -> LoadReport:
    """Load a read ``checkpoint`` (of the file ``filename``) into ``model``, converted to its key
    names, as ``purpose`` needs (see the module doc): ``'test'`` (``tools/test.py CHECKPOINT``,
    ``tools/infer.py``) and ``'resume'`` need every tensor of the model, ``'load_from'`` half of
    the file's. A file of another kind is a ``CheckpointMismatchError`` saying which file to
    give."""
    policy = COMPLETE if strict or purpose in ('resume', 'test') else PARTIAL
    return load_weights(model, checkpoint, _converter_for(model), policy, KEYS[purpose],
                        name=str(filename), fix=FIXES[purpose])


def _converter_for(model):
    """The converter that brings any supported file to ``model``'s keys (the best match)."""
    own = list(model.state_dict().keys())

    def to_model(state):
        return model_state_dict(state, own)[0]
    to_model.__name__ = 'model_state_dict'
    return to_model


def _schedulers(param_schedulers):
    """The scheduler objects of ``Runner.param_schedulers`` (a list, or a dict of lists for
    several optimizers; ``None`` before they are built)."""
    if isinstance(param_schedulers, dict):
        return [s for group in param_schedulers.values() for s in _schedulers(group)]
    return [s for s in param_schedulers or [] if hasattr(s, 'begin') and hasattr(s, 'end')]
