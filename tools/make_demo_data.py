"""Write the small demo datasets (synthetic COCO, ADE20K-style, ImageNet-style and unlabeled sets;
scikit-learn's real handwritten digits).

    python tools/make_demo_data.py data/demo [--seed 0] [--num-train 200] [--num-val 50] \
        [--size 128] [--imagenet-train 60] [--imagenet-val 20] [--num-unlabeled 64] \
        [--unlabeled-size 256] [--digits-size 32] [--only coco ade ...]

Same arguments -> byte-identical files. See tools/demo_data.py for the formats.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/, also when loaded by path
from cli import UsageError, add_debug_flag, run_tool  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='output root (coco/, ade/, imagenet/, unlabeled/, digits/ inside)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=200,
                        help='COCO and ADE training images')
    parser.add_argument('--num-val', type=int, default=50, help='COCO and ADE validation images')
    parser.add_argument('--size', type=int, default=128,
                        help='side of the COCO / ADE / ImageNet images')
    parser.add_argument('--imagenet-train', type=int, default=60,
                        help='ImageNet training images per class')
    parser.add_argument('--imagenet-val', type=int, default=20,
                        help='ImageNet validation images per class')
    parser.add_argument('--num-unlabeled', type=int, default=64)
    parser.add_argument('--unlabeled-size', type=int, default=256,
                        help='short side of the unlabeled images')
    parser.add_argument('--digits-size', type=int, default=32,
                        help='side of the upsampled digit images (8x8 scans)')
    parser.add_argument('--only', nargs='+',
                        default=['coco', 'ade', 'imagenet', 'unlabeled', 'digits'],
                        choices=['coco', 'ade', 'imagenet', 'unlabeled', 'digits'],
                        help='write only these parts')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if osp.exists(args.out) and not osp.isdir(args.out):
        raise UsageError(f"OUT '{args.out}' is a file: give the folder to write the datasets into")
    from demo_data import make_all  # tools/demo_data.py: numpy, Pillow, scikit-image only
    make_all(
        args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
        size=args.size, imagenet_train=args.imagenet_train, imagenet_val=args.imagenet_val,
        num_unlabeled=args.num_unlabeled, unlabeled_size=args.unlabeled_size,
        parts=args.only, verbose=True, digits_size=args.digits_size)


if __name__ == '__main__':
    run_tool(main)
