# ADDP pretraining of ViT-B/16 on ImageNet-1k, the release's recipe (configs/release/base/*.sh):
# 1600 epochs, batch 4096, AdamW (0.9, 0.95) wd 0.05, blr 1e-4 x 4096/256, 40 warm-up epochs then
# cosine, grad clip 3.0, AMP, RandomResizedCrop(256, 0.2-1.0, bicubic) + flip.
#   tools/dist_train.sh configs/pretrain/addp_vit-base-p16_1600e_in1k.py 8   (--auto-scale-lr)
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs512_mae.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)
runner_type = 'ADDPPretrainRunner'

# The frozen parts' weights (MAGE release; nothing is downloaded). The runner stops before loading
# any data when a file is missing.
tokenizer_checkpoint = 'checkpoints/vqgan_jax_strongaug.ckpt'
token_predictor_checkpoint = 'checkpoints/mage-vitb-1600.pth'
data_root = 'data/imagenet/'

model = dict(
    type='ADDP',
    # the pixel encoder: ViT-B/16 with the release's tokenizer_norm (pre_norm) and dropout 0.1;
    # release models_addp.py: attention logits and softmax in float32 under AMP, Linear layers
    # initialised Xavier-uniform (_init_weights)
    backbone=dict(type='ADDPViT', arch='base', img_size=256, patch_size=16, pre_norm=True,
                  final_norm=True, out_type='raw', drop_rate=0.1, attn_drop_rate=0.1,
                  attn_fp32=True, init_mode='release'),
    # the token decoder of the release: 8 blocks, 16 heads, as wide as the encoder, float32
    # attention; its width, token grid and codebook come from the backbone and the tokenizer
    neck=dict(type='ADDPDecoder', depth=8, num_heads=16, drop=0.1, attn_fp32=True),
    head=dict(type='ADDPSoftTargetLoss', label_smoothing=0.1),
    # the frozen noising process
    target_generator=dict(
        type='ADDPNoiser',
        # MAGE's VQGAN: 1024 codes of 256-d, 256x256 -> 16x16
        tokenizer=dict(type='VQGANTokenizer', ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2,
                       z_channels=256, n_embed=1024, embed_dim=256, resolution=256,
                       checkpoint=tokenizer_checkpoint,
                       # ours, not the release's: the frozen decoder in bf16 where the hardware
                       # runs it natively (else fp32); the encoder (token ids) stays fp32, and
                       # runs channels-last when the decoder is bf16 (README Performance)
                       precision='auto'),
        # MAGE ViT-B token predictor (codebook and grid from the tokenizer)
        token_predictor=dict(type='MAGETokenPredictor', embed_dim=768, depth=12, num_heads=12,
                             decoder_embed_dim=768, decoder_depth=8, decoder_num_heads=16,
                             checkpoint=token_predictor_checkpoint, attn_fp32=True,
                             precision='auto'),  # ours: bf16 where native, else fp32
        # the release: cosine schedule at 100 steps, ratios in [0.5, 1), truncnorm(0.55, 0.25)
        # weights, next state 1..5 steps further
        mask_schedule=dict(type='MaskSchedule', num_steps=100, min_ratio=0.5, max_ratio=1.0,
                           mu=0.55, std=0.25, max_step_gap=5)))

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

optim_wrapper = dict(
    # release main_pretrain.py: AMP with a dynamic loss scale that grows every 500 finite steps
    # (--amp_growth_interval 500; torch's GradScaler default start 2 ** 16). A non-finite loss
    # skips the step on every rank (as the release under AMP); more than 100 in a row stop
    # training (our limit; addp_mm/engine/optimizers/non_finite_guard.py)
    type='NonFiniteGuardAmpOptimWrapper', loss_scale=dict(init_scale=2. ** 16, growth_interval=500),
    max_consecutive_skips=100,
    # lr = blr 1e-4 x 4096 / 256
    optimizer=dict(type='AdamW', lr=1e-4 * 4096 / 256, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    # no weight decay on 1-d parameters (norms, biases), as the release; frozen parts left out
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_names=()))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=1560, by_epoch=True, begin=40, end=1600, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)
# release main_pretrain.py: no TF32 in matmuls / convolutions (keep this hook when adding others)
custom_hooks = [dict(type='TF32Hook', allow_tf32=False)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
auto_scale_lr = dict(base_batch_size=4096)
