"""Export a fine-tuned classifier, segmenter or detector (backbone + neck) to ONNX (or a
``torch.export`` program) and check it against PyTorch at once.

    python tools/deploy/export.py CONFIG CHECKPOINT [--format onnx|torch_export]
        [--shape H W] [--dynamic] [--opset N] [--out FILE] [--batch N] [--no-check] [--rtol R]
        [--cfg-options k=v ...] [--debug]

It prints, for each checked input, the max abs / relative difference to PyTorch and both
latencies (ONNX Runtime on the CPU), and writes FILE.json beside FILE: how to feed it an image
(the test pipeline's resize / crop / pad, mean / std, channel order, the outputs, the class names;
tools/deploy/run_onnx.py feeds it by FILE.json alone) and the checks. What each task exports, the
input it takes and FILE.json's schema: docs/user_guides/deployment.md.

A file that does not compute what the model computes fails the export: one line naming the file,
the input size and the difference, exit status 2, no FILE.json (an output further from PyTorch's
than --rtol of its largest |value|, a NaN, another number or shape of outputs, an input size the
file does not run at).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/cli.py
from cli import (ROOT, add_debug_flag, before_heavy_imports, require_config, require_file,  # noqa: E402
                 run_tool)

FORMATS = ('onnx', 'torch_export')  # = addp_mm.apis.export.FORMATS (here: --help needs no torch)
RTOL = 1e-4  # = addp_mm.apis.export.PARITY_RTOL
SUFFIX = {'onnx': '.onnx', 'torch_export': '.pt2'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Export a model to ONNX / torch.export and check it '
                                'against PyTorch (addp-mm)')
    p.add_argument('config', help='config file (an mmpretrain, mmseg or mmdet config)')
    p.add_argument('checkpoint', help='checkpoint of that model (e.g. work_dirs/<config>/epoch_N.pth)')
    p.add_argument('--format', choices=FORMATS, default='onnx', help='default: onnx')
    p.add_argument('--shape', nargs=2, type=int, metavar=('H', 'W'),
                   help='input size (default: the backbone\'s img_size)')
    p.add_argument('--dynamic', action='store_true',
                   help='free batch, height and width (multiples of the patch size, x the window '
                        'size with window attention); checked at a second size')
    p.add_argument('--opset', type=int, default=18, help='ONNX opset (default 18)')
    p.add_argument('--batch', type=int, default=1, help='batch of the example input (default 1)')
    p.add_argument('--out', help='file to write (default: work_dirs/export/<config name>.onnx|.pt2)')
    p.add_argument('--no-check', action='store_true', help='do not run the file against PyTorch')
    p.add_argument('--repeats', type=int, default=5, help='timed runs per latency (median)')
    p.add_argument('--rtol', type=float, default=RTOL,
                   help='the check fails where an output of the file differs from PyTorch\'s by '
                        f'more than this share of its largest |value| (default {RTOL:g})')
    p.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                   help='override config entries, e.g. model.backbone.with_cp=False')
    add_debug_flag(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    config = require_config(args.config)
    require_file(args.checkpoint, 'checkpoint',
                 'Give a checkpoint your training wrote (work_dirs/<config name>/epoch_N.pth).')
    out = args.out or osp.join('work_dirs', 'export',
                               osp.splitext(osp.basename(args.config))[0] + SUFFIX[args.format])
    before_heavy_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    from addp_mm.apis.export import export_model
    from addp_mm.engine.config import cfg_options_dict
    report = export_model(config, args.checkpoint, out, args.format, args.shape, args.dynamic,
                          args.opset, args.batch, check=not args.no_check, repeats=args.repeats,
                          cfg_options=cfg_options_dict(args.cfg_options), rtol=args.rtol)
    print('\n'.join(report.lines()))
    return report


if __name__ == '__main__':
    run_tool(main)
