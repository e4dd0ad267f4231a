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

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import ROOT, UsageError, add_debug_flag, before_heavy_imports, require_file, run_tool  # noqa: E402


def convert_state_dict(state: dict, keep_decoder: bool = False) -> dict:
    """The converted state dict (pure): see the module docstring."""
    from addp_mm.checkpoint import addp_state_dict, encoder_state_dict, finetune_classifier_state_dict
    encoder = encoder_state_dict(state)
    if not encoder:
        raise UsageError('no ADDP encoder weights found (keys like blocks.0.attn.qkv.weight); is it '
                        'an ADDP checkpoint?')
    if 'head.weight' in state:  # the released fine-tuning classifier
        out = finetune_classifier_state_dict(state)
    else:
        out = {f'backbone.{k}': v for k, v in encoder.items()}
        out.update({k: v for k, v in state.items() if k.startswith('head.fc.')})
    if keep_decoder:
        decoder = {k: v for k, v in addp_state_dict(state).items() if k.startswith('neck.')}
        if not decoder:
            raise UsageError('--keep-decoder: the file holds no ADDP decoder')
        out.update(decoder)
    return out


def convert(src: str, dst: str, keep_decoder: bool = False) -> dict:
    before_heavy_imports(threads=False)
    sys.path.insert(0, ROOT)  # run from a checkout
    import torch

    from addp_mm.checkpoint import read_checkpoint, unwrap_state_dict
    state = unwrap_state_dict(read_checkpoint(src, 'SRC'))
    try:
        out = convert_state_dict(state, keep_decoder)
    except UsageError as e:
        raise UsageError(f'{src}: {e}') from None
    groups = sorted({k.split('.')[0] for k in out})
    meta = dict(source=osp.basename(src), converted_by='tools/convert_checkpoint.py',
                num_tensors=len(out), parts=groups, left_out=len(state) - len(out))
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=out, meta=meta), tmp)
    os.replace(tmp, dst)  # never leave a half-written file
    return meta


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='ADDP checkpoint -> a file load_from / tools/test.py load')
    p.add_argument('src', help='the released addp-vit-*-16.pth / fine-tuned classifier, or one of '
                   'our checkpoints')
    p.add_argument('dst', help='the file to write')
    p.add_argument('--keep-decoder', action='store_true',
                   help='also write the pretraining decoder (neck.*), for continued pretraining')
    add_debug_flag(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    require_file(args.src, 'SRC checkpoint')
    meta = convert(args.src, args.dst, args.keep_decoder)
    print(f'wrote {args.dst}: {meta["num_tensors"]} tensors ({", ".join(meta["parts"])}), '
          f'{meta["left_out"]} others left out')


if __name__ == '__main__':
    run_tool(main)
