# Unconditional generation with ADDP ViT-L/16, the release's settings
# (configs/release/large/generate_addp_large_steps20.sh): 20 steps, cosine mask schedule,
# categorical sampling, choice temperature 6.0 annealed linearly to 0 ('dynamic').
# Paper, ViT-L, ImageNet-1k 256x256, 50k samples, torch-fidelity: FID 7.6, IS 105.1 (the paper
# does not say which of the two ViT-L release settings, 20 cosine or 256 linear steps, gave it).
#
#   python tools/generate.py configs/generation/addp_vit-large-p16_steps20_in1k.py \
#       checkpoints/addp-vit-large-16.pth --num-images 50000 --out-dir work_dirs/gen_vit-l
#   python tools/fid_is.py work_dirs/gen_vit-l --ref-dir data/imagenet/val --ref-resize 256 \
#       --inception-weights checkpoints/weights-inception-2015-12-05-6726825d.pth
_base_ = '../pretrain/addp_vit-large-p16_800e_in1k.py'

model = dict(target_generator=dict(token_predictor=None))

sampler = dict(
    type='ADDPSampler',
    num_steps=20,
    schedule='cosine',
    choice_temperature=6.0,
    temperature_mode='dynamic',
    top_p=None)

generate = dict(num_images=50000, batch_size=64, seed=0)
