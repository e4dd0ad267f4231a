"""What the tool-level tests share: a two-class image folder and the config text of a tiny
mmpretrain classifier with an ``ADDPViT`` backbone (each test adds its loop, optimizer and hooks)."""
import os
import os.path as osp

import numpy as np

# ``{data}``: the image folder; the classifier reads 32x32 images (patch 8)
TINY_CLASSIFIER = '''
default_scope = 'mmpretrain'
custom_imports = dict(imports={imports}, allow_failed_imports=False)
model = dict(
    type={model_type!r},{model_args}
    data_preprocessor=dict(num_classes=2, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    backbone=dict(type='ADDPViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64), img_size=32, patch_size=8, out_type='avg_featmap',
                  final_norm=False),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=32, loss=dict(type='CrossEntropyLoss')))
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root=r'{data}',
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
'''


def tiny_classifier_config(data: str, rest: str, batch_size: int = 4, imports=('addp_mm', ),
                           model_type: str = 'ImageClassifier', model_args: str = '') -> str:
    """The tiny classifier's config text for the image folder ``data``, then ``rest``."""
    return TINY_CLASSIFIER.format(data=data, batch_size=batch_size, imports=list(imports),
                                  model_type=model_type,
                                  model_args=f' {model_args},' if model_args else '') + rest


def make_class_folders(root: str, n: int = 4) -> None:
    """``root/class0`` (reddish) and ``root/class1`` (bluish): ``n`` noisy 32x32 PNGs each."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        d = osp.join(root, f'class{c}')
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            img = np.clip(rng.normal(colour, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(osp.join(d, f'{i}.png'))
