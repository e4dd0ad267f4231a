# Classification data in class folders, listed in meta/{train,val}.txt (the layout
# tools/make_demo_data.py writes: <split>/<class>/<image>), read by mmpretrain's CustomDataset,
# batch 32 on one process. A file that inherits it sets the dataset's data_root, metainfo and
# pipeline in train_dataloader and val_dataloader.
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type='CustomDataset', ann_file='meta/train.txt', data_prefix='train'),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type='CustomDataset', ann_file='meta/val.txt', data_prefix='val'),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
