"""Train with any addp-mm config (mmdet, mmseg, mmpretrain or our pretraining).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [FROZEN]] [--auto-scale-lr]
                                 [--pretrained BACKBONE_CKPT] [--tensorboard] [--cfg-options k=v ...]
                                 [--launcher none|pytorch|slurm] [--debug]

The config's ``default_scope`` picks the toolbox whose registries are used; ``runner_type`` picks
a registered runner (pretraining uses ``ADDPPretrainRunner``). Multi-process: tools/dist_train.sh.
The terminal shows progress; the environment, config and hook dumps go to the log file
(``WORK_DIR/<timestamp>/<timestamp>.log``).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import (  # noqa: E402
    ROOT, UsageError, add_run_flags, before_heavy_imports, parse_run_args, require_config,
    require_file, run_tool)


# the frozen parts' modes (addp_mm/models/utils/precision.py FROZEN_MODES; that module imports
# torch, which --help does not)
FROZEN_MODES = ('fp32', 'fast', 'release', 'auto')
# --amp: each fp32 optimizer wrapper and its mixed-precision counterpart
AMP_WRAPPERS = {'OptimWrapper': 'AmpOptimWrapper', 'NonFiniteGuardOptimWrapper': 'NonFiniteGuardAmpOptimWrapper'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a model (addp-mm)')
    p.add_argument('config', help='config file')
    p.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from CKPT, or from the latest checkpoint in the work dir if no CKPT')
    p.add_argument('--amp', nargs='?', const='config', metavar='FROZEN',
                   choices=('config', ) + FROZEN_MODES,
                   help='mixed precision training (mmengine AmpOptimWrapper; on a CPU bf16 where '
                        'native). A pretraining config\'s frozen parts run as the config says, or '
                        'as FROZEN says: release (every part follows the AMP dtype, the VQ '
                        'encoder too: the release\'s own precision), fast (ours: the VQ encoder '
                        'in fp32), fp32, auto (release under AMP, else fast)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr by (total batch size) / auto_scale_lr.base_batch_size')
    p.add_argument('--pretrained', metavar='CKPT',
                   help="initialise model.backbone from CKPT (init_cfg=dict(type='Pretrained')), e.g. "
                        'a pretraining run\'s work_dirs/<config name>/backbone.pth')
    p.add_argument('--tensorboard', action='store_true',
                   help="also log to TensorBoard (mmengine's TensorboardVisBackend); view with "
                        'tensorboard --logdir WORK_DIR')
    add_run_flags(p)
    return parse_run_args(p, argv)


def main(argv=None):
    args = parse_args(argv)
    config = require_config(args.config)
    if args.resume not in (None, 'auto'):
        require_file(args.resume, '--resume checkpoint')
    if args.pretrained is not None:
        require_file(args.pretrained, '--pretrained checkpoint',
                     'A pretraining run writes work_dirs/<config name>/backbone.pth at its end.')
    before_heavy_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    from addp_mm.engine.config import (add_tensorboard, cfg_options_dict, load_config,
                                       set_frozen_precision, set_pretrained_backbone,
                                       set_work_dir)
    from addp_mm.engine.preflight import check_amp, check_checkpoints, check_data
    from addp_mm.engine.runner_factory import build_runner, close_process_group, setup_launcher
    cfg = load_config(config, cfg_options_dict(args.cfg_options))
    if args.pretrained is not None:
        set_pretrained_backbone(cfg, args.pretrained)
    if args.amp not in (None, 'config'):
        set_frozen_precision(cfg, args.amp)
    if args.amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') in AMP_WRAPPERS.values():
            print('AMP is already on in this config')
        else:
            wrapper.type = AMP_WRAPPERS.get(wrapper.get('type', 'OptimWrapper'), 'AmpOptimWrapper')
            wrapper.setdefault('loss_scale', 'dynamic')
            if wrapper.type == 'NonFiniteGuardAmpOptimWrapper':
                wrapper.pop('check_grads', None)  # the loss scaler checks gradients under AMP
    check_amp(cfg)
    for key, path in check_checkpoints(cfg):
        if not (key == 'load_from' and args.resume not in (None, 'auto')):
            require_file(path, key)
    check_data(cfg, ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else []))
    setup_launcher(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir, args.config)
    if args.tensorboard:
        add_tensorboard(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise UsageError(f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    runner = build_runner(cfg)
    runner.train()
    del runner  # the runner's DDP wrapper holds the process group
    close_process_group()


if __name__ == '__main__':
    run_tool(main)
