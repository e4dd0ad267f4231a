"""Predict images with any detection, segmentation or classification config of addp-mm, through
the toolbox's own inferencer (mmdet's ``DetInferencer``, mmseg's ``MMSegInferencer``, mmpretrain's
``ImageClassificationInferencer``, picked by the config's ``default_scope``), as mmdet's
``demo/image_demo.py``.

    python tools/infer.py IMAGE_OR_FOLDER CONFIG [CHECKPOINT] [--out-dir outputs]
                          [--device cpu|cuda:0] [--score-thr 0.3] [--batch-size 1]
                          [--no-save-vis] [--no-save-pred] [--cfg-options k=v ...] [--debug]

Writes the drawings to ``OUT_DIR/vis/`` and the predictions to ``OUT_DIR/preds/`` (mmdet and
mmpretrain: ``<image stem>.json``; mmseg: ``<NNNNNNNN>_pred.png``, the class of every pixel, in
the order of the images), and prints one line per image. CHECKPOINT is a checkpoint of the
config's model (``work_dirs/<config name>/epoch_N.pth`` or ``iter_N.pth``), checked as
``tools/test.py`` checks it; without it the model is untrained.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import (  # noqa: E402
    ROOT, UsageError, add_debug_flag, before_heavy_imports, missing_file, require_config,
    require_file, run_tool)

# what a folder's images may end with (what mmcv reads)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Predict images with a detection, segmentation or '
                                'classification config (the toolbox\'s own inferencer)')
    p.add_argument('inputs', metavar='IMAGE_OR_FOLDER', help='an image file or a folder of images')
    p.add_argument('config', help='config file (mmdet, mmseg or mmpretrain default_scope)')
    p.add_argument('checkpoint', nargs='?',
                   help='checkpoint of the config\'s model (work_dirs/<config name>/epoch_N.pth); '
                        'without it the model is untrained')
    p.add_argument('--out-dir', default='outputs',
                   help='where vis/ (drawings) and preds/ (predictions) go (default: outputs)')
    p.add_argument('--device', help='e.g. cpu, cuda:0 (default: cuda:0 when available, else cpu)')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detection: draw boxes with at least this score (default 0.3; the json '
                        'holds every prediction)')
    p.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    p.add_argument('--no-save-vis', action='store_true', help='do not write the drawings')
    p.add_argument('--no-save-pred', action='store_true', help='do not write the predictions')
    p.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                   help='override config entries, e.g. model.test_cfg.rcnn.max_per_img=10')
    add_debug_flag(p)
    return p.parse_args(argv)


def image_files(path: str):
    """``[path]`` for a file, else the image files of the folder ``path`` (sorted; not its
    subfolders, as the inferencers read a folder); a missing path or a folder without images is a
    user's mistake."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise missing_file(path, 'IMAGE_OR_FOLDER', 'Give an image file or a folder of images.')
    files = sorted(osp.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_EXTENSIONS) and osp.isfile(osp.join(path, f)))
    if not files:
        raise UsageError(f"IMAGE_OR_FOLDER '{path}' holds no image file "
                         f"({' '.join(IMAGE_EXTENSIONS)})")
    return files


def summary(scope: str, prediction, score_thr: float) -> str:
    """One line about one image's prediction."""
    if scope == 'mmdet':
        kept = sum(s >= score_thr for s in prediction['scores'])
        return f'{kept} of {len(prediction["scores"])} boxes with a score >= {score_thr}'
    if scope == 'mmseg':
        import numpy as np
        height, width = prediction.shape
        return f'classes {np.unique(prediction).tolist()} on {width}x{height} px'
    name = prediction.get('pred_class', prediction['pred_label'])
    return f'{name} ({prediction["pred_score"]:.3f})'


def main(argv=None):
    args = parse_args(argv)
    files = image_files(args.inputs)
    config = require_config(args.config)
    if args.checkpoint is not None:
        require_file(args.checkpoint, 'checkpoint',
                     'Give a checkpoint your training wrote (work_dirs/<config name>/epoch_N.pth '
                     'or iter_N.pth).')
    before_heavy_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    from addp_mm.apis.inference import PRED_DIR, VIS_DIR, init_inferencer, run_inference
    from addp_mm.engine.config import cfg_options_dict
    inferencer = init_inferencer(config, args.checkpoint, args.device,
                                 cfg_options_dict(args.cfg_options))
    result = run_inference(inferencer, files, args.out_dir, save_vis=not args.no_save_vis,
                           save_pred=not args.no_save_pred, score_thr=args.score_thr,
                           batch_size=args.batch_size)
    for file, prediction in zip(files, result['predictions']):
        print(f'{file}: {summary(inferencer.toolbox, prediction, args.score_thr)}')
    written = [osp.join(args.out_dir, d) for d, skip in ((VIS_DIR, args.no_save_vis),
                                                         (PRED_DIR, args.no_save_pred)) if not skip]
    if written:
        print(f'{len(files)} image(s): {" and ".join(osp.abspath(w) for w in written)}')
    return 0


if __name__ == '__main__':
    run_tool(main)
