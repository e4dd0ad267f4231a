"""Inference with a config and a checkpoint through each toolbox's own inferencer, as used by
``tools/infer.py``: the config's ``default_scope`` picks mmdet's ``DetInferencer``, mmseg's
``MMSegInferencer`` or mmpretrain's ``ImageClassificationInferencer``.

The inferencers load weights with mmengine's non-strict loader, which only warns when a file does
not fit (a random model then predicts). Here the checkpoint goes through our checkpoint layer as
``tools/test.py CHECKPOINT`` does (:func:`~addp_mm.engine.checked_checkpoint_load.load_checked`:
read without running code, converted to the model's key names, every tensor of the model needed;
a file of another kind is one line saying which file to give). The class names and palette come
from the checkpoint's ``meta.dataset_meta`` (what training writes), what it lacks from the
config's test dataset ``metainfo``.

What :func:`run_inference` writes under ``out_dir``, in each inferencer's own layout:

* mmdet: ``vis/<image file name>`` (boxes with a score of at least ``score_thr`` drawn) and
  ``preds/<image stem>.json`` (``labels``, ``scores``, ``bboxes`` in pixels of the image, ``masks``
  as COCO RLE: every prediction of the model, ``DetInferencer``'s ``pred2dict``);
* mmseg: ``vis/<image file name>`` (the class map over the image) and ``preds/<NNNNNNNN>_pred.png``
  (the class index of every pixel, at the image's size; numbered in the order of the images);
* mmpretrain: ``vis/<image stem>.png`` (the class and score written on the image) and
  ``preds/<image stem>.json`` (``pred_label``, ``pred_score``, ``pred_class``, ``pred_scores``: the
  inferencer's result, in mmdet's layout since mmpretrain's inferencer writes no file).
"""
import os
import os.path as osp
from importlib import import_module
from typing import Dict, Optional, Sequence

from addp_mm.errors import UsageError

# default_scope -> (module, class) of the toolbox's inferencer
INFERENCERS = {
    'mmdet': ('mmdet.apis', 'DetInferencer'),
    'mmseg': ('mmseg.apis', 'MMSegInferencer'),
    'mmpretrain': ('mmpretrain.apis', 'ImageClassificationInferencer'),
}
VIS_DIR, PRED_DIR = 'vis', 'preds'
_INFERENCERS_MADE = []  # in this process, for the names of their visualizers

__all__ = ['INFERENCERS', 'init_inferencer', 'run_inference', 'VIS_DIR', 'PRED_DIR']


def _checked_checkpoint(model, checkpoint: Optional[str], cfg) -> dict:
    """Load ``checkpoint`` into ``model`` through our checkpoint layer; returns what the
    toolboxes' inferencers read from a checkpoint: the model's own (loaded) state dict and a
    ``meta`` with ``dataset_meta`` (the file's, what it lacks from the config's test dataset
    ``metainfo``)."""
    from addp_mm.checkpoint import read_checkpoint
    from addp_mm.engine.checked_checkpoint_load import KEYS, load_checked
    loaded = {}
    if checkpoint is not None:
        loaded = dict(read_checkpoint(checkpoint, KEYS['test']))
        load_checked(model, loaded, checkpoint, 'test')
    meta = dict(loaded.get('meta') or {})
    config_meta = cfg.get('test_dataloader', {}).get('dataset', {}).get('metainfo') or {}
    dataset_meta = dict(config_meta, **meta.get('dataset_meta', {}))
    if dataset_meta:
        meta['dataset_meta'] = dataset_meta
    return dict(state_dict=model.state_dict(), meta=meta)


class _CheckedEngineWeights:
    """For mmengine ``BaseInferencer`` subclasses (``DetInferencer``, ``MMSegInferencer``): the
    weights are loaded by :func:`_checked_checkpoint`; the toolbox's own loading step then sets
    the class names and palette from what it returns (its load is then a no-op)."""

    def __init__(self, model, weights: Optional[str] = None, **kwargs):
        self._checkpoint_file = weights
        super().__init__(model=model, weights=None, **kwargs)

    def _load_weights_to_model(self, model, checkpoint, cfg):
        super()._load_weights_to_model(
            model, _checked_checkpoint(model, self._checkpoint_file, cfg), cfg)


class _CheckedClsWeights:
    """For mmpretrain's inferencers (``get_model`` builds the model): built without weights, then
    loaded by :func:`_checked_checkpoint`, with the class names it returns."""

    def __init__(self, model, pretrained: Optional[str] = None, **kwargs):
        super().__init__(model=model, pretrained=False, **kwargs)
        dataset_meta = _checked_checkpoint(self.model, pretrained, self.config)['meta'].get(
            'dataset_meta')
        if dataset_meta:
            self.model._dataset_meta = dataset_meta
            if kwargs.get('classes') is None:
                self.classes = dataset_meta.get('classes')


def init_inferencer(config: str, checkpoint: Optional[str] = None, device: Optional[str] = None,
                    cfg_options: Optional[dict] = None):
    """The inferencer of ``config``'s toolbox with the weights of ``checkpoint`` (``None``: the
    model as built, untrained). ``device``: e.g. ``'cpu'``, ``'cuda:0'`` (default: the first GPU
    if there is one)."""
    from addp_mm.engine.config import load_config
    cfg = load_config(config, cfg_options)
    scope = cfg.get('default_scope')
    if scope not in INFERENCERS:
        raise UsageError(
            f'{config}: default_scope={scope!r}; inference takes a config of '
            f'{", ".join(sorted(INFERENCERS))} (a detector, segmenter or classifier; images from '
            'a pretraining or generation config: tools/generate.py)')
    module, name = INFERENCERS[scope]
    base = getattr(import_module(module), name)
    mixin = _CheckedClsWeights if scope == 'mmpretrain' else _CheckedEngineWeights
    inferencer_class = type(name, (mixin, base), {'__doc__': base.__doc__, 'toolbox': scope})
    import torch
    if device is None:
        device = 'cuda:0' if torch.cuda.is_available() else 'cpu'
    elif torch.device(device).type == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'--device {device}: this machine has no CUDA device; run with '
                         '--device cpu')
    from mmengine.registry import DefaultScope
    if isinstance(cfg.get('visualizer'), dict):
        # a name of its own: the toolboxes' runtimes name their visualizer 'visualizer', and
        # mmengine hands an existing instance of that name to a later runner in this process
        # (which then logs to the inferencer's visualizer, without a folder)
        _INFERENCERS_MADE.append(name)
        cfg.visualizer['name'] = f'{scope}_inferencer_{len(_INFERENCERS_MADE)}_{os.getpid()}'
    # built in its scope whatever the current one is (mmpretrain builds its pipeline in the
    # current scope: after another toolbox's inferencer, that toolbox's)
    with DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmpretrain':
            return inferencer_class(cfg, pretrained=checkpoint, device=device)
        inferencer = inferencer_class(cfg, weights=checkpoint, device=device, scope=scope)
    inferencer.show_progress = False  # the tool prints a line per image
    return inferencer


def run_inference(inferencer, files: Sequence[str], out_dir: str, save_vis: bool = True,
                  save_pred: bool = True, score_thr: float = 0.3, batch_size: int = 1) -> Dict:
    """Predict ``files`` with ``inferencer`` (from :func:`init_inferencer`) and write the drawings
    and predictions under ``out_dir`` (see the module doc); returns the inferencer's result
    (``{'predictions': [one per file, in order], ...}``)."""
    import mmengine
    from mmengine.infer import BaseInferencer
    os.makedirs(out_dir, exist_ok=True)
    vis_dir = osp.join(out_dir, VIS_DIR) if save_vis else ''
    pred_dir = osp.join(out_dir, PRED_DIR) if save_pred else ''
    files = list(files)
    scope = inferencer.toolbox
    if scope == 'mmdet':  # its own out_dir/vis and out_dir/preds
        return inferencer(files, batch_size=batch_size, out_dir=out_dir, no_save_vis=not save_vis,
                          no_save_pred=not save_pred, pred_score_thr=score_thr)
    if scope == 'mmseg':
        # MMSegInferencer.__call__ saves both or neither under out_dir; its visualize and
        # postprocess take each folder ('' = not saved), which mmengine's __call__ hands on
        result = BaseInferencer.__call__(inferencer, files, batch_size=batch_size,
                                         img_out_dir=vis_dir, pred_out_dir=pred_dir)
        if len(files) == 1:  # MMSegInferencer unpacks a single prediction; one list for all
            result = dict(predictions=[result['predictions']], visualization=[])
        return result
    if save_vis:
        os.makedirs(vis_dir, exist_ok=True)
    predictions = inferencer(files, batch_size=batch_size, show_dir=vis_dir or None)
    if save_pred:
        for file, prediction in zip(files, predictions):
            stem = osp.splitext(osp.basename(file))[0]
            mmengine.dump(dict(prediction, pred_scores=prediction['pred_scores'].tolist()),
                          osp.join(pred_dir, f'{stem}.json'))
    return dict(predictions=predictions, visualization=[])
