# scikit-learn's handwritten digits with their labels (python tools/make_demo_data.py data/demo
# --only digits): class folders 0..9 read through meta/{train,val}.txt by mmpretrain's
# CustomDataset (1,438 training, 359 val digits), 32 px, pixels in [0, 1] as the ADDP pretraining
# sees them; a grayscale PNG is loaded as 3 equal channels (mmcv's imread, color_type='color').
_base_ = './class_folders.py'

data_root = 'data/demo/digits'
classes = tuple(str(d) for d in range(10))   # = data_root/classes.txt (folder names 0..9)
metainfo = dict(classes=classes)
img_size = 32
data_preprocessor = dict(num_classes=len(classes), mean=[0., 0., 0.], std=[255., 255., 255.],
                         to_rgb=True)

# digits are not flip-invariant: no horizontal flip; mild crops only (the 8x8 scans fill the frame)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.6, 1.0),
         aspect_ratio_range=(0.8, 1.25), backend='pillow', interpolation='bicubic'),
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
val_dataloader = dict(batch_size=128,
                      dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
