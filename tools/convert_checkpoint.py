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

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from addp_mm.models.utils import encoder_state_dict, load_checkpoint_file, unwrap_state_dict  # noqa: E402


def convert(src: str, dst: str) -> dict:
    state, ignored, _ = encoder_state_dict(unwrap_state_dict(load_checkpoint_file(src, what='SRC')))
    if not state:
        raise ValueError(f'{src}: no ADDP encoder weights found')
    meta = dict(source=osp.basename(src), num_tensors=len(state), ignored=len(ignored))
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, dst)  # never leave a half-written file
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description='ADDP checkpoint -> clean ADDPViT backbone checkpoint')
    p.add_argument('src')
    p.add_argument('dst')
    args = p.parse_args(argv)
    meta = convert(args.src, args.dst)
    print(f'wrote {args.dst}: {meta["num_tensors"]} encoder tensors, {meta["ignored"]} others left out')


if __name__ == '__main__':
    main()
