"""Write a clean ADDPViT backbone checkpoint from any supported checkpoint.

    python tools/convert_checkpoint.py SRC DST

SRC: the released ADDP pretraining checkpoint (addp-vit-*-16.pth), the released fine-tuning
classifier, one of our pretraining / downstream checkpoints, or a converted file. DST holds
``{'state_dict': encoder weights in ADDPViT names, 'meta': {...}}`` and loads with
``init_cfg=dict(type='Pretrained', checkpoint=DST)``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import ROOT, UserError, add_debug_flag, quiet_imports, require_file, run_tool  # noqa: E402


def convert(src: str, dst: str) -> dict:
    quiet_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    import torch

    from addp_mm.models.utils import encoder_state_dict, load_checkpoint_file, unwrap_state_dict
    state, ignored, _ = encoder_state_dict(unwrap_state_dict(load_checkpoint_file(src, what='SRC')))
    if not state:
        raise UserError(f'{src}: no ADDP encoder weights found (is it an ADDP checkpoint?)')
    meta = dict(source=osp.basename(src), num_tensors=len(state), ignored=len(ignored))
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, dst)  # never leave a half-written file
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description='ADDP checkpoint -> clean ADDPViT backbone checkpoint')
    p.add_argument('src', help='the released addp-vit-*-16.pth / fine-tuned classifier, or one of '
                   'our checkpoints')
    p.add_argument('dst', help='the backbone file to write')
    add_debug_flag(p)
    args = p.parse_args(argv)
    require_file(args.src, 'SRC checkpoint')
    meta = convert(args.src, args.dst)
    print(f'wrote {args.dst}: {meta["num_tensors"]} encoder tensors, {meta["ignored"]} others left out')


if __name__ == '__main__':
    run_tool(main)
