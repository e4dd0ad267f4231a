# The demo's ADE20K-format segmentation data (python tools/make_demo_data.py data/demo):
# images/{training,validation}/*.jpg and annotations/*.png as ADE's (data/demo/ade/, without the
# ADEChallengeData2016 level), 4 shape classes + background, 128x128 crops.
# mmseg's ADE20K data settings with the demo's data: BaseSegDataset rather than ADE20KDataset
# (the latter would try to map our class names onto ADE's 150, and fail); the folder layout and
# the reduce-zero-label convention are ADE's.
_base_ = 'mmseg::_base_/datasets/ade20k.py'

dataset_type = 'BaseSegDataset'
data_root = 'data/demo/ade/'
# = tools/demo_data.py: ADE_DEMO_CLASSES / ADE_DEMO_PALETTE. On disk 0 is an ignored
# outline, 1 the background, 2..5 the shapes; reduce_zero_label maps them to 255, 0, 1..4.
classes = ('background', 'circle', 'square', 'triangle', 'star')
palette = [[120, 120, 120], [220, 50, 50], [50, 190, 70], [50, 90, 225], [240, 210, 40]]
metainfo = dict(classes=classes, palette=palette)
crop_size = (128, 128)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# multi-scale + flip test-time augmentation (tools/test.py --tta; mmseg's tta_model SegTTAModel
# averages the predictions), mmseg's ADE20K convention at the demo's scales
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')]]),
]
# mmseg's loaders (train: InfiniteSampler; val: batch 1) on one process, reading the demo folder
demo_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                    seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(**demo_dataset, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(**demo_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
