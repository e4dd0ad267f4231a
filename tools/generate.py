"""Unconditional generation with a pretrained ADDP model.

    python tools/generate.py CONFIG CHECKPOINT [--num-images N] --out-dir DIR
        [--steps 20] [--schedule cosine|linear] [--temperature 6.0]
        [--temperature-mode dynamic|static] [--top-p P] [--batch-size B] [--seed S]
        [--amp bf16|fp16] [--device cuda|cpu] [--grid-images 64] [--save-trajectory]
        [--launcher none|pytorch]
        [--cfg-options k=v ...] [--debug]

CONFIG is a generation config (configs/generation/) or any ADDP pretraining config; its
``sampler`` dict gives the defaults of the sampling options. CHECKPOINT is the released
``addp-vit-*-16.pth`` (tokenizer taken from its ``vqgan.*`` entries) or a full checkpoint of our
pretraining (``work_dirs/<config name>/iter_N.pth``: encoder + decoder; tokenizer from
``model.target_generator.tokenizer.checkpoint``). The exported ``backbone.pth`` holds the encoder only and is for
fine-tuning, not generation.

Writes ``DIR/{index:06d}.png`` for index 0..N-1, ``DIR/grid.png`` (the first 64) and, with
``--save-trajectory``, ``DIR/trajectory/{index:06d}.png`` (each image's steps). With
``--launcher pytorch`` (torchrun) each rank writes its own block of indices, seeded with
``seed + rank``:

    torchrun --nproc_per_node 8 tools/generate.py CONFIG CKPT --num-images 50000 \
        --out-dir work_dirs/samples --launcher pytorch
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import (  # noqa: E402
    ROOT, UsageError, add_run_flags, before_heavy_imports, parse_run_args, require_config,
    require_generation_checkpoint, run_tool)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Generate images with a pretrained ADDP model')
    p.add_argument('config', help='generation or ADDP pretraining config')
    p.add_argument('checkpoint', help='released ADDP checkpoint (addp-vit-*-16.pth) or a full one '
                   'of our pretraining (work_dirs/<config name>/iter_N.pth, not backbone.pth)')
    p.add_argument('--num-images', type=int,
                   help='images to generate in total (default: config generate.num_images)')
    p.add_argument('--out-dir', required=True, help='where the PNG files go')
    p.add_argument('--steps', type=int, help='denoising steps (config sampler.num_steps, else 20)')
    p.add_argument('--schedule', choices=['cosine', 'linear'], help='mask schedule')
    p.add_argument('--temperature', type=float, help='choice temperature (release 6.0)')
    p.add_argument('--temperature-mode', choices=['dynamic', 'static'])
    p.add_argument('--top-p', type=float, help='nucleus sampling (default: categorical)')
    p.add_argument('--batch-size', type=int, help='images per batch and rank (config '
                   'generate.batch_size, else 64)')
    p.add_argument('--seed', type=int,
                   help='rank r uses seed + r (default: config generate.seed, else 0)')
    p.add_argument('--amp', choices=['bf16', 'fp16'],
                   help='autocast the networks (on a CPU only where it computes them natively)')
    p.add_argument('--device', help='default: cuda when available, else cpu')
    p.add_argument('--grid-images', type=int, default=64, help='images in grid.png')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.add_argument('--save-trajectory', action='store_true',
                   help='also write DIR/trajectory/{index:06d}.png: for every step the decoded '
                        'pixels above the mask of still-unknown tokens')
    add_run_flags(p, launchers=('none', 'pytorch'),
                  cfg_help='override config entries, e.g. '
                           'model.target_generator.tokenizer.checkpoint=PATH')
    return parse_run_args(p, argv)


def main(argv=None):
    args = parse_args(argv)
    config = require_config(args.config)
    require_generation_checkpoint(args.checkpoint)
    before_heavy_imports()
    sys.path.insert(0, ROOT)  # run from a checkout
    import torch

    from addp_mm.apis import (barrier, build_generation_model, close_launcher, generate_to_dir,
                              init_launcher, rank_range, write_grid)
    from addp_mm.engine.config import cfg_options_dict
    from addp_mm.engine.preflight import native_cpu_autocast
    from addp_mm.models.generation import build_sampler
    rank, world_size, device = init_launcher(args.launcher)
    if args.device is not None:
        device = torch.device(args.device)
    if args.amp and device.type == 'cpu' and not native_cpu_autocast(args.amp):
        raise UsageError(f'--amp {args.amp}: this CPU has no native {args.amp} (torch emulates it, '
                        'many times slower than fp32): leave --amp out on this machine')
    # parts without weights (a demo's random tokenizer) are the same on every rank and every run
    torch.manual_seed(0)
    model, cfg = build_generation_model(config, args.checkpoint, device,
                                        cfg_options_dict(args.cfg_options))
    sampler = build_sampler(cfg.get('sampler'), num_steps=args.steps, schedule=args.schedule,
                            choice_temperature=args.temperature,
                            temperature_mode=args.temperature_mode, top_p=args.top_p)
    defaults = cfg.get('generate', None) or {}
    num_images = args.num_images or defaults.get('num_images')
    if not num_images or num_images < 1:
        raise UsageError('give --num-images N (>= 1) or generate.num_images in the config')
    batch_size = args.batch_size or defaults.get('batch_size', 64)
    seed = args.seed if args.seed is not None else defaults.get('seed', 0)
    start, stop = rank_range(num_images, rank, world_size)
    if rank == 0:
        print(f'{sampler!r}: {num_images} images on {world_size} rank(s), batch {batch_size}, '
              f'seed {seed} (+ rank) -> {args.out_dir}', flush=True)
    t0 = time.time()
    generate_to_dir(model, sampler, args.out_dir, start, stop, batch_size=batch_size,
                    seed=seed + rank, device=device, autocast_dtype=args.amp,
                    progress=rank == 0 and not args.no_progress,
                    save_trajectory=args.save_trajectory)
    barrier()
    if rank == 0:
        grid = write_grid(args.out_dir, num_images, max_images=args.grid_images)
        print(f'wrote {num_images} images and {grid} in {time.time() - t0:.1f} s', flush=True)
    close_launcher()


if __name__ == '__main__':
    run_tool(main)
