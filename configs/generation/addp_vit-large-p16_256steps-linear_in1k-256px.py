# Unconditional generation with ADDP ViT-L/16, the release's long schedule
# (configs/release/large/generate_addp_large_steps256_linear.sh): 256 steps with the linear mask
# schedule (one more token becomes known per step), categorical sampling, choice temperature 6.0
# annealed to 0. Paper numbers for ViT-L: see addp_vit-large-p16_20steps-cosine_in1k-256px.py.
#
#   python tools/generate.py configs/generation/addp_vit-large-p16_256steps-linear_in1k-256px.py \
#       checkpoints/addp-vit-large-16.pth --num-images 50000 --out-dir work_dirs/gen_vit-l_256
#   python tools/fid_is.py work_dirs/gen_vit-l_256 --ref-dir data/imagenet/val --ref-resize 256 \
#       --inception-weights checkpoints/weights-inception-2015-12-05-6726825d.pth
_base_ = './addp_vit-large-p16_20steps-cosine_in1k-256px.py'

# the release ran this one with 512 images per step in total; 64 per batch and rank here
sampler = dict(num_steps=256, schedule='linear')
