# The demo's ImageNet-style classification data (python tools/make_demo_data.py data/demo):
# 4 shape classes in class folders, read through meta/{train,val}.txt by mmpretrain's
# CustomDataset; 128 px, ImageNet normalisation.
_base_ = './class_folders.py'

data_root = 'data/demo/imagenet/'
# = tools/demo_data.py: IMAGENET_DEMO_CLASSES (also data_root/classes.txt)
classes = ('circle', 'square', 'triangle', 'star')
metainfo = dict(classes=classes)
img_size = 128
data_preprocessor = dict(num_classes=len(classes), mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
