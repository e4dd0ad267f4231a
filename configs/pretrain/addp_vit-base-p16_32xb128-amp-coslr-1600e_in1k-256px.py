# ADDP pretraining of ViT-B/16 on ImageNet-1k, the release's recipe (configs/release/base/*.sh):
# 1600 epochs, batch 4096 (32 GPUs x 128), AdamW (0.9, 0.95) wd 0.05, blr 1e-4 x 4096/256,
# 40 warm-up epochs then cosine, grad clip 3.0, AMP, RandomResizedCrop(256, 0.2-1.0, bicubic) + flip.
#   tools/dist_train.sh configs/pretrain/addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py 8 --auto-scale-lr
# The frozen parts read model.target_generator.tokenizer.checkpoint and
# model.target_generator.token_predictor.checkpoint (MAGE release); the runner stops before loading
# any data when a file is missing.
_base_ = [
    '../_base_/models/addp_vit-base-p16.py',
    '../_base_/datasets/imagenet_addp-pretrain-256px.py',
    '../_base_/schedules/addp_pretrain_amp-adamw-coslr-1600e.py',
    '../_base_/addp_pretrain_runtime.py',
]
