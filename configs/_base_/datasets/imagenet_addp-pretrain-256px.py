# ImageNet-1k train images for ADDP pretraining, the release's augmentation (main_pretrain.py):
# RandomResizedCrop(256, scale 0.2-1.0, bicubic) + flip; mmpretrain's ImageNet layout
# (docs/data_preparation.md). Images reach the model as float RGB in [0, 1].
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs512_mae.py'

data_root = 'data/imagenet/'
# images as float RGB in [0, 1]: no normalisation before the tokenizer (the encoder normalises
# the noised pixels itself)
data_preprocessor = dict(_delete_=True, type='ImgDataPreprocessor', mean=[0., 0., 0.],
                         std=[255., 255., 255.], bgr_to_rgb=True)
train_pipeline = [
    # any PNG/JPEG mode as 8-bit BGR; an unreadable file stops with its name (or
    # on_bad_file='skip': skipped with a warning and a count), addp_mm/datasets/transforms.py
    dict(type='LoadImageChecked', on_bad_file='error'),
    dict(type='RandomResizedCrop', scale=256, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
# 128 per GPU x 32 GPUs = 4096 (the release's total batch)
train_dataloader = dict(batch_size=128, num_workers=10,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
