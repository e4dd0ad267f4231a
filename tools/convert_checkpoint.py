"""Convert a released ADDP checkpoint (or one of ours) into a file that ``load_from``,
``tools/test.py`` and ``init_cfg=dict(type='Pretrained', checkpoint=DST)`` load directly.

    python tools/convert_checkpoint.py SRC DST [--keep-decoder]

SRC: the released ADDP pretraining checkpoint (addp-vit-*-16.pth), the released fine-tuning
classifier, one of our pretraining / downstream checkpoints, or a converted file.
DST: ``{'state_dict': ..., 'meta': {...}}`` in our model's names:

- ``backbone.*``: the encoder (``ADDPViT``), for every SRC;
- ``head.fc.*``: the classifier of a fine-tuning checkpoint (mmpretrain ``ImageClassifier``), so
  ``tools/test.py configs/imagenet/... DST`` evaluates it as it is;
- ``neck.*``: with ``--keep-decoder``, the pretraining decoder (``ADDPDecoder``), for
  ``load_from`` in a pretraining config (the frozen parts come from their own files).

Position tables of another image size are resized when the file is loaded.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402

from addp_mm.models.utils import (addp_state_dict, encoder_state_dict,  # noqa: E402
                                  finetune_classifier_state_dict, read_checkpoint,
                                  unwrap_state_dict)


def convert_state_dict(state: dict, keep_decoder: bool = False) -> dict:
    """The converted state dict (pure): see the module docstring."""
    encoder, _, _ = encoder_state_dict(state)
    if not encoder:
        raise ValueError('no ADDP encoder weights found (keys like blocks.0.attn.qkv.weight)')
    if 'head.weight' in state:  # the released fine-tuning classifier
        out = finetune_classifier_state_dict(state)
    else:
        out = {f'backbone.{k}': v for k, v in encoder.items()}
        out.update({k: v for k, v in state.items() if k.startswith('head.fc.')})
    if keep_decoder:
        decoder = {k: v for k, v in addp_state_dict(state).items() if k.startswith('neck.')}
        if not decoder:
            raise ValueError('--keep-decoder: the file holds no ADDP decoder')
        out.update(decoder)
    return out


def convert(src: str, dst: str, keep_decoder: bool = False) -> dict:
    state = unwrap_state_dict(read_checkpoint(src, 'SRC'))
    try:
        out = convert_state_dict(state, keep_decoder)
    except ValueError as e:
        raise ValueError(f'{src}: {e}') from None
    groups = sorted({k.split('.')[0] for k in out})
    meta = dict(source=osp.basename(src), converted_by='tools/convert_checkpoint.py',
                num_tensors=len(out), parts=groups, left_out=len(state) - len(out))
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=out, meta=meta), tmp)
    os.replace(tmp, dst)  # never leave a half-written file
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description='ADDP checkpoint -> a file load_from / tools/test.py load')
    p.add_argument('src')
    p.add_argument('dst')
    p.add_argument('--keep-decoder', action='store_true',
                   help='also write the pretraining decoder (neck.*), for continued pretraining')
    args = p.parse_args(argv)
    meta = convert(args.src, args.dst, args.keep_decoder)
    print(f'wrote {args.dst}: {meta["num_tensors"]} tensors ({", ".join(meta["parts"])}), '
          f'{meta["left_out"]} others left out')


if __name__ == '__main__':
    main()
