"""Train with any addp-mm config (mmdet, mmseg, mmpretrain or our pretraining).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

The config's ``default_scope`` picks the toolbox whose registries are used; ``runner_type`` picks
a registered runner (pretraining uses ``ADDPPretrainRunner``). Multi-process: tools/dist_train.sh.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402

from addp_mm.engine.launch import build_runner, load_config, set_work_dir, setup_launcher  # noqa: E402


# --amp: each fp32 optimizer wrapper and its mixed-precision counterpart
AMP_WRAPPERS = {'OptimWrapper': 'AmpOptimWrapper', 'NonFiniteGuardOptimWrapper': 'NonFiniteGuardAmpOptimWrapper'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a model (addp-mm)')
    p.add_argument('config', help='config file')
    p.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from CKPT, or from the latest checkpoint in the work dir if no CKPT')
    p.add_argument('--amp', action='store_true', help='mixed precision training')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr by (total batch size) / auto_scale_lr.base_batch_size')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, e.g. train_cfg.max_epochs=3')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    setup_launcher(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') in AMP_WRAPPERS.values():
            print('AMP is already on in this config')
        else:
            wrapper.type = AMP_WRAPPERS.get(wrapper.get('type', 'OptimWrapper'), 'AmpOptimWrapper')
            wrapper.setdefault('loss_scale', 'dynamic')
            if wrapper.type == 'NonFiniteGuardAmpOptimWrapper':
                wrapper.pop('check_grads', None)  # the loss scaler checks gradients under AMP
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError(f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
