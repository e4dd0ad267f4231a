# What the two frozen-part trainings of the toy chain share (configs/toy/vq-tokenizer_*.py and
# mage-token-predictor_*.py): an iteration-based run with no validation or test loop (the chain
# evaluates the exported parts itself, tools/run_toy_pipeline.py), logs by iteration, seed 0;
# both read the unlabelled training digits (python tools/make_demo_data.py data/demo --only digits),
# batch 32. mmengine resolves ``data_root`` here, when this file is read: another root is given
# for ``train_dataloader.dataset.data_root`` too (--cfg-options; tools/run_toy_pipeline.py does).
_base_ = ['mmpretrain::_base_/default_runtime.py']

val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=False)

data_root = 'data/demo/digits'
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
