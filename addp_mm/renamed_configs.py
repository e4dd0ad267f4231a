"""The configs renamed to mmpretrain's ``{algorithm}_{backbone}_{schedule}_{dataset}`` convention:
old path -> new path. The tools accept an old path for one more release (with a note on
stderr) and keep naming the work dir after the path given. Standard library only (the tools
read it before their heavy imports)."""
import os.path as osp
from typing import Optional

__all__ = ['RENAMED_CONFIGS', 'renamed_config']

RENAMED_CONFIGS = {
    'configs/pretrain/addp_vit-base-p16_1600e_in1k.py':
        'configs/pretrain/addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py',
    'configs/pretrain/addp_vit-large-p16_800e_in1k.py':
        'configs/pretrain/addp_vit-large-p16_32xb128-amp-coslr-800e_in1k-256px.py',
    'configs/pretrain/addp_vit-tiny_demo.py':
        'configs/pretrain/addp_vit-demo-p16_1xb8-300iter_demo-64px.py',
    'configs/generation/addp_vit-base-p16_steps20_in1k.py':
        'configs/generation/addp_vit-base-p16_20steps-cosine_in1k-256px.py',
    'configs/generation/addp_vit-large-p16_steps20_in1k.py':
        'configs/generation/addp_vit-large-p16_20steps-cosine_in1k-256px.py',
    'configs/generation/addp_vit-large-p16_steps256-linear_in1k.py':
        'configs/generation/addp_vit-large-p16_256steps-linear_in1k-256px.py',
    'configs/imagenet/addp-vit-base-p16_8xb128-coslr-100e_in1k-256px.py':
        'configs/imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py',
    'configs/imagenet/addp-vit-large-p16_8xb128-coslr-50e_in1k-256px.py':
        'configs/imagenet/vit-large-p16_addp-pre_8xb128-coslr-50e_in1k-256px.py',
    'configs/coco/mask-rcnn_addp-vit-base-p16_lsj-100e_coco.py':
        'configs/coco/mask-rcnn_vit-base-p16_addp-pre_lsj-100e_coco.py',
    'configs/coco/mask-rcnn_addp-vit-large-p16_lsj-100e_coco.py':
        'configs/coco/mask-rcnn_vit-large-p16_addp-pre_lsj-100e_coco.py',
    'configs/ade20k/upernet_addp-vit-base-p16_8xb2-160k_ade20k-512x512.py':
        'configs/ade20k/upernet_vit-base-p16_addp-pre_8xb2-160k_ade20k-512x512.py',
    'configs/ade20k/upernet_addp-vit-large-p16_8xb2-160k_ade20k-512x512.py':
        'configs/ade20k/upernet_vit-large-p16_addp-pre_8xb2-160k_ade20k-512x512.py',
    'configs/demo/mask-rcnn_addp-vit-demo_demo-coco.py':
        'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py',
    'configs/demo/upernet_addp-vit-demo_demo-ade-128x128.py':
        'configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py',
    'configs/demo/addp-vit-demo_demo-in1k-128px.py':
        'configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py',
    'configs/toy/vq-tokenizer_digits-32px.py':
        'configs/toy/vq-autoencoder_vqgan-toy_1xb32-1k_digits-32px.py',
    'configs/toy/mage-token-predictor_digits-32px.py':
        'configs/toy/mage-token-trainer_mage-toy_1xb32-2k_digits-32px.py',
    'configs/toy/addp_vit-toy_digits-32px.py':
        'configs/toy/addp_vit-demo-p4_1xb32-2k_digits-32px.py',
    'configs/toy/vit-toy_digits-32px_finetune-10pct.py':
        'configs/toy/vit-demo-p4_1xb32-60e_digits-10pct-32px.py',
    'configs/toy/vit-toy_digits-32px_linear-probe.py':
        'configs/toy/vit-demo-p4_linear-probe_1xb64-15e_digits-32px.py',
}


def renamed_config(path: str) -> Optional[str]:
    """The new path of an old config path (as given, relative to the current folder or to the
    repository), else ``None``."""
    norm = osp.normpath(path).replace(osp.sep, '/')
    for old, new in RENAMED_CONFIGS.items():
        if norm == old or norm.endswith('/' + old):
            return norm[:len(norm) - len(old)] + new
    return None
