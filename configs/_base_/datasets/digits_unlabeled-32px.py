# scikit-learn's handwritten digits as an image folder without labels (python
# tools/make_demo_data.py data/demo --only digits: 1,438 training digits, 8x8 scans upsampled to
# 32x32 grayscale PNGs, read as RGB), batch 32. Images reach the model as float RGB in [0, 1].
data_root = 'data/demo/digits'
data_preprocessor = dict(type='ImgDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.],
                         bgr_to_rgb=True)
# digits are centred and upright: no crop or flip
train_pipeline = [
    dict(type='LoadImageChecked', on_bad_file='error'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train', with_label=False,
                 extensions=('.png', ), pipeline=train_pipeline))
