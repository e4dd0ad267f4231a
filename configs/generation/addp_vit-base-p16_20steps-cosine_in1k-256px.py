# Unconditional generation with ADDP ViT-B/16, the release's settings
# (configs/release/base/generate_addp_base_steps20.sh): 20 steps, cosine mask schedule,
# categorical sampling, choice temperature 6.0 annealed linearly to 0 ('dynamic').
# Paper, ImageNet-1k 256x256, 50k samples, torch-fidelity: FID 8.9, IS 95.3.
#
#   python tools/generate.py configs/generation/addp_vit-base-p16_20steps-cosine_in1k-256px.py \
#       checkpoints/addp-vit-base-16.pth --num-images 50000 --out-dir work_dirs/gen_vit-b
#   (multi-GPU: torchrun --nproc_per_node 8 tools/generate.py ... --launcher pytorch)
#   python tools/fid_is.py work_dirs/gen_vit-b --ref-dir data/imagenet/val --ref-resize 256 \
#       --inception-weights checkpoints/weights-inception-2015-12-05-6726825d.pth
#   (--ref-resize 256: the val images resized as the release's prepare_imagenet_val.py,
#   torchvision Resize(256) + CenterCrop(256); --save-ref-stats NPZ keeps their statistics)
#
# The model is the pretraining model without its token predictor (generation does not use it).
# With the released checkpoint the tokenizer is read from its `vqgan.*` entries; with one of our
# checkpoints it is loaded from model.target_generator.tokenizer.checkpoint.
_base_ = '../_base_/models/addp_vit-base-p16.py'

model = dict(target_generator=dict(token_predictor=None))

sampler = dict(
    type='ADDPSampler',
    num_steps=20,
    schedule='cosine',
    choice_temperature=6.0,
    temperature_mode='dynamic',
    top_p=None)

# tools/generate.py defaults: images per batch and rank (the release: 64 in total over its GPUs;
# the batch size does not change the distribution of the samples)
generate = dict(num_images=50000, batch_size=64, seed=0)
