"""What ``tools/test.py`` writes besides the metric, the way each toolbox's own ``tools/test.py``
does: predictions (``--out``) and drawings (``--show-dir``, ``--show``)."""
from typing import Optional

import torch
from mmengine.config import Config

from addp_mm.errors import UsageError

def setup_test_outputs(cfg: Config, out: Optional[str], show_dir: Optional[str], show: bool = False,
                       wait_time: float = 2., score_thr: Optional[float] = None,
                       draw_size: int = 0) -> None:
    """Make the toolbox of ``cfg`` write predictions to ``out`` (a ``.pkl`` file) and drawings to
    ``show_dir``, the way each toolbox's own ``tools/test.py`` does. Detection: boxes with a score
    below ``score_thr`` are not drawn, and images whose shorter side is below ``draw_size`` are
    drawn enlarged to it (so that labels are readable)."""
    scope = cfg.get('default_scope', 'mmengine')
    if out is not None:
        if not out.endswith(('.pkl', '.pickle')):
            raise UsageError(f'--out {out!r}: the predictions file must end with .pkl or .pickle')
        dump = dict(type='mmdet.DumpDetResults' if scope == 'mmdet' else 'DumpResults', out_file_path=out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]) + [dump]
    if show_dir is None and not show:
        return
    hooks = cfg.setdefault('default_hooks', {})
    hook = hooks.get('visualization')
    if hook is None:
        raise UsageError(f'--show/--show-dir: the config has no default_hooks.visualization ({scope})')
    if scope in ('mmseg', 'mmpretrain'):
        hook['interval'] = 1  # their hooks otherwise draw only every 50th / 5000th image
    if scope == 'mmpretrain':
        hook['enable'] = True
        if show_dir:
            hook['out_dir'] = show_dir
    else:  # mmdet, mmseg
        hook['draw'] = True
        if scope == 'mmdet' and score_thr is not None:
            hook['score_thr'] = score_thr
        if scope == 'mmdet' and draw_size:
            cfg.visualizer = enlarged_visualizer(cfg.visualizer, draw_size)
        if scope == 'mmdet' and show_dir:
            hook['test_out_dir'] = show_dir
        elif show_dir:
            cfg.visualizer['save_dir'] = show_dir
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time


def enlarged_visualizer(visualizer: dict, draw_size: int) -> dict:
    """The config of ``visualizer`` (mmdet's ``DetLocalVisualizer`` or a subclass) as a subclass
    that draws images whose shorter side is below ``draw_size`` enlarged to it, with the boxes and
    masks of the data sample scaled to match (fonts and lines are sized for the drawn image)."""
    import torch.nn.functional as F
    from mmdet.registry import VISUALIZERS as DET_VISUALIZERS

    base = DET_VISUALIZERS.get(visualizer.get('type', 'DetLocalVisualizer'))

    class Enlarged(base):

        def add_datasample(self, name, image, data_sample=None, *args, **kwargs):
            if draw_size > min(image.shape[:2]) and data_sample is not None:
                import mmcv
                height = image.shape[0]
                image = mmcv.imrescale(image, draw_size / min(image.shape[:2]))
                scale = image.shape[0] / height
                data_sample = data_sample.clone()
                for key in ('gt_instances', 'pred_instances'):
                    if key not in data_sample:
                        continue
                    inst = data_sample.get(key)
                    if 'bboxes' in inst and hasattr(inst.bboxes, 'rescale_'):  # mmdet boxes
                        inst.bboxes = inst.bboxes.clone()
                        inst.bboxes.rescale_([scale, scale])
                    elif 'bboxes' in inst:
                        inst.bboxes = inst.bboxes * scale
                    if 'masks' in inst and isinstance(inst.masks, torch.Tensor) and not len(inst.masks):
                        inst.masks = inst.masks.new_zeros((0, *image.shape[:2]), dtype=torch.bool)
                    elif 'masks' in inst and isinstance(inst.masks, torch.Tensor):
                        inst.masks = F.interpolate(inst.masks[None].float(), size=image.shape[:2],
                                                   mode='nearest')[0] > 0.5
                    elif 'masks' in inst:
                        inst.masks = inst.masks.resize(image.shape[:2])
            return super().add_datasample(name, image, data_sample, *args, **kwargs)

    name = f'Enlarged{base.__name__}'
    Enlarged.__name__ = Enlarged.__qualname__ = name
    DET_VISUALIZERS.register_module(name=name, module=Enlarged, force=True)
    return dict(visualizer, type=name)
