"""FID and Inception Score of generated images (torch-fidelity, local Inception weights).

    python tools/fid_is.py GEN_DIR (--ref-dir DIR | --ref-stats NPZ) --inception-weights PATH
        [--ref-resize 256] [--save-ref-stats NPZ] [--batch-size 64] [--device cuda|cpu]
        [--isc-splits 10] [--no-isc]

GEN_DIR holds the PNGs of tools/generate.py (grid.png is skipped). The paper scores 50k samples
against ImageNet-1k val at 256x256: ViT-B FID 8.9 / IS 95.3, ViT-L FID 7.6 / IS 105.1 (paper).
Compute the val statistics once and reuse them:

    python tools/fid_is.py --save-ref-stats work_dirs/in1k_val_256.npz --ref-dir data/imagenet/val \
        --ref-resize 256 --inception-weights checkpoints/weights-inception-2015-12-05-6726825d.pth
    python tools/fid_is.py work_dirs/gen_vit-b --ref-stats work_dirs/in1k_val_256.npz \
        --inception-weights checkpoints/weights-inception-2015-12-05-6726825d.pth
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import ROOT, UsageError, add_debug_flag, before_heavy_imports, require_file, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='FID / IS of a folder of generated images')
    p.add_argument('gen_dir', nargs='?', help='generated images (omit with --save-ref-stats only)')
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument('--ref-dir', help='reference images (sub-folders included)')
    ref.add_argument('--ref-stats', help='.npz with the reference mu and sigma')
    p.add_argument('--inception-weights', required=True,
                   help="local torch-fidelity Inception-v3 weights "
                        "(weights-inception-2015-12-05-6726825d.pth)")
    p.add_argument('--ref-resize', type=int,
                   help="torchvision Resize(N) (short side, bilinear) + CenterCrop(N) of the reference "
                        "images, as the release's prepare_imagenet_val.py (ImageNet val: 256)")
    p.add_argument('--save-ref-stats', help='also write the statistics of --ref-dir to this .npz')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--device', help='default: cuda when available, else cpu')
    p.add_argument('--isc-splits', type=int, default=10)
    p.add_argument('--no-isc', action='store_true', help='FID only')
    p.add_argument('--feature-extractor', default='inception-v3-compat',
                   help='torch-fidelity feature extractor name (the paper: inception-v3-compat)')
    p.add_argument('--out', help='write the metrics to this .json file')
    add_debug_flag(p)
    args = p.parse_args(argv)
    if args.save_ref_stats and not args.ref_dir:
        p.error('--save-ref-stats needs --ref-dir')
    if args.gen_dir is None and not args.save_ref_stats:
        p.error('give GEN_DIR (or only --save-ref-stats with --ref-dir)')
    return args


def main(argv=None):
    args = parse_args(argv)
    require_file(args.inception_weights, '--inception-weights file')
    for what, path in (('GEN_DIR', args.gen_dir), ('--ref-dir', args.ref_dir)):
        if path is not None and not osp.isdir(path):
            raise UsageError(f"{what} folder '{path}' not found")
    if args.ref_stats is not None:
        require_file(args.ref_stats, '--ref-stats file',
                     'Write it once with --save-ref-stats NPZ --ref-dir DIR.')
    before_heavy_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    from addp_mm.evaluation import compute_fid_is, save_statistics
    common = dict(inception_weights=args.inception_weights, batch_size=args.batch_size,
                  device=args.device, feature_extractor=args.feature_extractor)
    ref_stats = args.ref_stats
    if args.save_ref_stats:
        save_statistics(args.ref_dir, args.save_ref_stats, resize=args.ref_resize, **common)
        print(f'reference statistics of {args.ref_dir} -> {args.save_ref_stats}')
        ref_stats = args.save_ref_stats
    if args.gen_dir is None:
        return None
    metrics = compute_fid_is(args.gen_dir, ref_dir=None if ref_stats else args.ref_dir,
                             ref_stats=ref_stats, isc=not args.no_isc, isc_splits=args.isc_splits,
                             ref_resize=args.ref_resize, **common)
    print(json.dumps(metrics, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=1)
    return metrics


if __name__ == '__main__':
    run_tool(main)
