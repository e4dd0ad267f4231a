"""Evaluate a checkpoint with any addp-mm config: bbox/segm mAP (mmdet), mIoU (mmseg), top-1
(mmpretrain).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out preds.pkl] [--show-dir DIR]
                                           [--cfg-options k=v ...] [--launcher none|pytorch|slurm]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from addp_mm.engine.launch import (build_runner, load_config, set_work_dir, setup_launcher,  # noqa: E402
                                   setup_test_outputs)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test (evaluate) a model (addp-mm)')
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='where the evaluation log and metrics go')
    p.add_argument('--out', help='write the predictions to this .pkl file')
    p.add_argument('--show-dir', help='write drawn predictions to this folder (relative to the work dir)')
    p.add_argument('--show', action='store_true', help='show drawn predictions in a window')
    p.add_argument('--wait-time', type=float, default=2, help='seconds each shown image stays')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} not found')
    cfg = load_config(args.config, args.cfg_options)
    setup_launcher(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    setup_test_outputs(cfg, args.out, args.show_dir, args.show, args.wait_time)
    runner = build_runner(cfg)
    metrics = runner.test()
    return metrics


if __name__ == '__main__':
    main()
