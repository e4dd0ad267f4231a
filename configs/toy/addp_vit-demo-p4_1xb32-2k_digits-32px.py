# Step 3 of the toy chain (docs/user_guides/train_every_part.md): ADDP pretraining on the digits
# with the tokenizer (step 1) and token predictor (step 2) trained here, frozen and in float32.
#
#   python tools/train.py configs/toy/addp_vit-demo-p4_1xb32-2k_digits-32px.py --cfg-options \
#       model.target_generator.tokenizer.checkpoint=TOKENIZER_FILE \
#       model.target_generator.token_predictor.checkpoint=TOKEN_PREDICTOR_FILE
#   -> work_dirs/addp_vit-demo-p4_1xb32-2k_digits-32px/iter_N.pth (encoder + decoder: tools/generate.py)
#      work_dirs/addp_vit-demo-p4_1xb32-2k_digits-32px/backbone.pth (encoder only: configs/toy/vit-demo-p4_*.py)
#
# The release's algorithm at toy sizes: 32 px digits, tokenizer downsampling 4 -> 8x8 grid = the
# patch grid of ADDPViT(arch='demo', img_size=32, patch_size=4) (64 wide, 4 blocks), a 2-block
# decoder; the demo pretraining's optimizer.
_base_ = [
    '../_base_/models/addp_vit-base-p16.py',
    '../_base_/datasets/digits_unlabeled-32px.py',
    '../_base_/addp_pretrain_runtime.py',
    '../_base_/schedules/adamw_fp32-guard_iter.py',
]

model = dict(
    backbone=dict(arch='demo', img_size=32, patch_size=4, drop_rate=0.0, attn_drop_rate=0.0),
    neck=dict(depth=2, num_heads=4, drop=0.0),
    target_generator=dict(
        precision='fp32',  # the frozen parts in float32: the same numbers on every CPU
        # the sizes of steps 1 and 2
        tokenizer=dict(ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, z_channels=32, n_embed=128,
                       embed_dim=32, resolution=32, precision='fp32',
                       checkpoint='work_dirs/vq-autoencoder_vqgan-toy_1xb32-1k_digits-32px/tokenizer.pth'),
        token_predictor=dict(
            embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=64, decoder_depth=1,
            decoder_num_heads=4, attn_fp32=False,
            checkpoint='work_dirs/mage-token-trainer_mage-toy_1xb32-2k_digits-32px/token_predictor.pth')))

train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))

# the schedule (the optimizer: _base_/schedules/adamw_fp32-guard_iter.py)
max_iters = 2000  # = tools/run_toy_pipeline.py's default
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(logger=dict(type='LoggerHook', interval=20),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                                     max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=32)
randomness = dict(seed=0, deterministic=False)
