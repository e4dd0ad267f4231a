"""Evaluate a checkpoint with any addp-mm config: bbox/segm mAP (mmdet), mIoU (mmseg), top-1
(mmpretrain).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out preds.pkl] [--tta]
                         [--show-dir DIR] [--show] [--score-thr 0.3] [--draw-size 512]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm] [--debug]

``--show-dir vis`` writes the drawings to ``./vis`` (relative to the current folder, whatever the
toolbox); the last line printed is their absolute path and count.
"""
import argparse
import glob
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import (  # noqa: E402
    ROOT, add_run_flags, before_heavy_imports, parse_run_args, require_config, require_file,
    run_tool)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test (evaluate) a model (addp-mm)')
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint file (e.g. work_dirs/<config name>/epoch_N.pth)')
    p.add_argument('--work-dir', help='where the evaluation log and metrics go '
                   '(default: work_dirs/<config name>)')
    p.add_argument('--out', help='write the predictions to this .pkl file')
    p.add_argument('--show-dir', help='write drawn predictions (ground truth | prediction) to this '
                   'folder (relative to the current folder); its absolute path is printed at the end')
    p.add_argument('--show', action='store_true', help='show drawn predictions in a window')
    p.add_argument('--wait-time', type=float, default=2, help='seconds each shown image stays')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detection: draw predicted boxes with at least this score (default 0.3)')
    p.add_argument('--tta', action='store_true',
                   help='test-time augmentation: the config\'s tta_pipeline and tta_model (e.g. '
                        'multi-scale + flip for the ADE20k configs), as the toolboxes\' --tta')
    p.add_argument('--draw-size', type=int, default=512,
                   help='detection: draw small images enlarged so their shorter side is at least '
                        'this many pixels (0: as they are)')
    add_run_flags(p, cfg_help='override config entries, e.g. test_dataloader.batch_size=1')
    return parse_run_args(p, argv)


def main(argv=None):
    args = parse_args(argv)
    config = require_config(args.config)
    require_file(args.checkpoint, 'checkpoint',
                 'Give a checkpoint your training wrote (work_dirs/<config name>/epoch_N.pth or '
                 'iter_N.pth).')
    before_heavy_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    from addp_mm.engine.config import cfg_options_dict, load_config, set_work_dir, use_tta
    from addp_mm.engine.preflight import check_data
    from addp_mm.engine.runner_factory import build_runner, close_process_group, setup_launcher
    from addp_mm.engine.test_outputs import setup_test_outputs
    cfg = load_config(config, cfg_options_dict(args.cfg_options))
    if args.tta:
        use_tta(cfg, args.config)
    check_data(cfg, ['test_dataloader'])
    setup_launcher(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    show_dir = osp.abspath(args.show_dir) if args.show_dir else None
    setup_test_outputs(cfg, args.out, show_dir, args.show, args.wait_time,
                       score_thr=args.score_thr, draw_size=args.draw_size)
    runner = build_runner(cfg)
    metrics = runner.test()
    if args.out is not None:
        runner.logger.info(f'predictions: {osp.abspath(args.out)}')
    if show_dir is not None:
        count = len(glob.glob(osp.join(show_dir, '**', '*.[pj][pn]g'), recursive=True))
        runner.logger.info(f'{count} drawings in {show_dir}')
    del runner  # the runner's DDP wrapper holds the process group
    close_process_group()
    return metrics


if __name__ == '__main__':
    run_tool(main)
