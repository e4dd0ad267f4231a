# Unconditional generation with ADDP ViT-L/16, the release's settings
# (configs/release/large/generate_addp_large_steps20.sh): the ViT-B generation config with ViT-L
# sizes. Paper, ViT-L, ImageNet-1k 256x256, 50k samples, torch-fidelity: FID 7.6, IS 105.1 (the
# paper does not say which of the two ViT-L release settings, 20 cosine or 256 linear steps, gave it).
#
#   python tools/generate.py configs/generation/addp_vit-large-p16_20steps-cosine_in1k-256px.py \
#       checkpoints/addp-vit-large-16.pth --num-images 50000 --out-dir work_dirs/gen_vit-l
#   python tools/fid_is.py work_dirs/gen_vit-l --ref-dir data/imagenet/val --ref-resize 256 \
#       --inception-weights checkpoints/weights-inception-2015-12-05-6726825d.pth
_base_ = './addp_vit-base-p16_20steps-cosine_in1k-256px.py'

# ViT-L: the decoder follows the encoder's width 1024
model = dict(backbone=dict(arch='large'))
