# The demo's unlabelled images (python tools/make_demo_data.py data/demo: data/demo/unlabeled/*.png),
# read as an image folder (mmpretrain's CustomDataset without labels), 64 px crops as the ADDP
# pretraining's augmentation. Images reach the model as float RGB in [0, 1].
data_root = 'data/demo/unlabeled'
img_size = 64
data_preprocessor = dict(type='ImgDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.],
                         bgr_to_rgb=True)
train_pipeline = [
    # any PNG/JPEG mode as 8-bit BGR; an unreadable file stops with its name (or
    # on_bad_file='skip': skipped with a warning and a count), addp_mm/datasets/transforms.py
    dict(type='LoadImageChecked', on_bad_file='error'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, with_label=False,
                 extensions=('.jpg', '.jpeg', '.png', '.webp', '.bmp'), pipeline=train_pipeline))
