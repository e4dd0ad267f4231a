# Step 3 of the toy chain (README "Training every part yourself"): ADDP pretraining on the digits
# with the tokenizer (step 1) and token predictor (step 2) trained here, frozen and in float32.
#
#   python tools/train.py configs/toy/addp_vit-toy_digits-32px.py --cfg-options \
#       tokenizer_checkpoint=T model.target_generator.tokenizer.checkpoint=T \
#       token_predictor_checkpoint=P model.target_generator.token_predictor.checkpoint=P
#   -> work_dirs/addp_vit-toy_digits-32px/iter_N.pth (encoder + decoder: tools/generate.py)
#      work_dirs/addp_vit-toy_digits-32px/backbone.pth (encoder only: configs/toy/vit-toy_*.py)
#
# Same algorithm and recipe shape as configs/pretrain/addp_vit-tiny_demo.py (which this inherits),
# toy sizes: 32 px digits, tokenizer downsampling 4 -> 8x8 grid = the patch grid of
# ADDPViT(arch='demo', img_size=32, patch_size=4) (64 wide, 4 blocks), a 2-block decoder.
_base_ = '../pretrain/addp_vit-tiny_demo.py'

tokenizer_checkpoint = 'work_dirs/vq-tokenizer_digits-32px/tokenizer.pth'
token_predictor_checkpoint = 'work_dirs/mage-token-predictor_digits-32px/token_predictor.pth'
data_root = 'data/demo/digits'
img_size = 32
patch_size = 4  # = the tokenizer's downsampling factor 2 ** (len(ch_mult) - 1)
max_iters = 2000  # = tools/run_toy_pipeline.py's default (README)

model = dict(
    backbone=dict(img_size=img_size, patch_size=patch_size),
    target_generator=dict(
        # sizes of configs/toy/vq-tokenizer_digits-32px.py and mage-token-predictor_digits-32px.py
        tokenizer=dict(_delete_=True, type='VQGANTokenizer', ch=32, ch_mult=[1, 1, 2],
                       num_res_blocks=1, z_channels=32, n_embed=128, embed_dim=32,
                       resolution=img_size, checkpoint=tokenizer_checkpoint, precision='fp32'),
        token_predictor=dict(_delete_=True, type='MAGETokenPredictor', embed_dim=64, depth=2,
                             num_heads=4, decoder_embed_dim=64, decoder_depth=1,
                             decoder_num_heads=4, attn_fp32=False,
                             checkpoint=token_predictor_checkpoint, precision='fp32')))

# digits are centred and upright: no crop or flip
train_pipeline = [
    dict(type='LoadImageChecked', on_bad_file='error'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 with_label=False, extensions=('.png', ), pipeline=train_pipeline))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(logger=dict(type='LoggerHook', interval=20),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                                     max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=32)
