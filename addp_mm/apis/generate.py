"""What ``tools/generate.py`` does, as functions: build an ADDP model for generation from a
pretraining config and a checkpoint, split the images across ranks, sample, write PNG files and a
grid.

    model, cfg = build_generation_model('configs/generation/addp_vit-base-p16_20steps-cosine_in1k-256px.py',
                                        'checkpoints/addp-vit-base-16.pth', device='cuda')
    sampler = build_sampler(cfg.get('sampler'))  # addp_mm.models.generation
    generate_to_dir(model, sampler, 'samples/', start=0, stop=64, batch_size=32, seed=0)
    write_grid('samples/', num_images=64)
"""
import copy
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.dist import barrier, get_dist_info, init_dist, is_distributed  # noqa: F401 (re-exported)
from mmengine.logging import print_log
from mmengine.registry import MODELS
from torchvision.utils import make_grid

from addp_mm.checkpoint import read_checkpoint, require_full_addp_checkpoint, unwrap_state_dict
from addp_mm.errors import UsageError
from addp_mm.models.generation import ADDPSampler
from addp_mm.models.utils import save_image, to_uint8

IMAGE_NAME = '{:06d}.png'
GRID_NAME = 'grid.png'
TRAJECTORY_DIR = 'trajectory'  # --save-trajectory: each image's steps as a strip


# ---------------------------------------------------------------------------------------------
# model and sampler
# ---------------------------------------------------------------------------------------------
def build_generation_model(config, checkpoint: str, device: Union[str, torch.device] = 'cpu',
                           cfg_options: Optional[Dict] = None) -> Tuple[nn.Module, object]:
    """An ``ADDP`` model for generation, in eval mode on ``device``, and the config.

    Args:
        config: path of (or loaded) config whose ``model`` is an ADDP pretraining model; its
            ``token_predictor`` is dropped (generation does not use it).
        checkpoint: the released ADDP file (``addp-vit-*-16.pth``) or one of our pretraining
            checkpoints. Encoder and decoder load strictly. The tokenizer loads from the file's
            ``vqgan.*`` entries when it has them (the released files do), otherwise from
            ``model.target_generator.tokenizer.checkpoint`` of the config.
    """
    from mmengine.config import Config

    from addp_mm.engine.config import load_config
    cfg = load_config(config, cfg_options) if isinstance(config, str) else config
    if not isinstance(cfg, Config) and not isinstance(cfg, dict):
        raise UsageError(f'config must be a path or a Config, got {type(cfg).__name__}')
    model_cfg = cfg['model']
    if hasattr(model_cfg, 'to_dict'):
        model_cfg = model_cfg.to_dict()
    model_cfg = copy.deepcopy(dict(model_cfg))
    if model_cfg.get('type') != 'ADDP':
        raise UsageError(f"the config's model must be an ADDP pretraining model (type='ADDP'), got "
                         f"type={model_cfg.get('type')!r}")
    model_cfg['target_generator'] = dict(model_cfg['target_generator'], token_predictor=None)
    model_cfg.pop('init_cfg', None)

    state = unwrap_state_dict(read_checkpoint(checkpoint, 'CHECKPOINT'))
    require_full_addp_checkpoint(state, checkpoint)  # before any warning about the other parts
    has_vqgan = any(k.startswith('vqgan.') for k in state)
    tokenizer_cfg = dict(model_cfg['target_generator']['tokenizer'])
    if has_vqgan:
        tokenizer_cfg['checkpoint'] = None  # taken from the ADDP file below
    elif tokenizer_cfg.get('checkpoint') is None:
        print_log(f'{checkpoint} holds no tokenizer weights and '
                  'model.target_generator.tokenizer.checkpoint is None: the VQGAN tokenizer is '
                  'RANDOMLY INITIALISED, the images are meaningless (only for demos and tests; '
                  'give the tokenizer checkpoint in the config).', logger='current', level=30)
    model_cfg['target_generator']['tokenizer'] = tokenizer_cfg

    model = MODELS.build(model_cfg)  # reads no file
    model.target_generator.init_weights()  # the tokenizer's own file, if it has one
    if has_vqgan:
        model.target_generator.tokenizer.load_checkpoint(state, prefix='vqgan.', key='CHECKPOINT')
        source = f'the vqgan.* entries of {checkpoint}'
    else:
        source = tokenizer_cfg.get('checkpoint') or 'random weights'
    model.load_addp_checkpoint(state, name=checkpoint)
    del state
    print_log(f'generation: tokenizer from {source}', logger='current')
    return model.to(device).eval(), cfg


# ---------------------------------------------------------------------------------------------
# work split, sampling, files
# ---------------------------------------------------------------------------------------------
def rank_range(num_images: int, rank: int = 0, world_size: int = 1) -> Tuple[int, int]:
    """The contiguous block ``[start, stop)`` of image indices that ``rank`` generates."""
    if not 0 <= rank < world_size:
        raise ValueError(f'rank {rank} is not in [0, {world_size})')
    return num_images * rank // world_size, num_images * (rank + 1) // world_size


def write_grid(out_dir: str, num_images: int, max_images: int = 64, nrow: Optional[int] = None,
               name: str = GRID_NAME) -> str:
    """``grid.png`` of the first ``min(num_images, max_images)`` PNGs written to ``out_dir``."""
    from PIL import Image
    n = min(num_images, max_images)
    images = []
    for i in range(n):
        with Image.open(osp.join(out_dir, IMAGE_NAME.format(i))) as img:
            images.append(torch.from_numpy(np.array(img.convert('RGB'))).permute(2, 0, 1))
    path = osp.join(out_dir, name)
    save_image(image_grid(torch.stack(images), nrow), path)
    return path


def image_grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2) -> torch.Tensor:
    """uint8 ``B x 3 x H x W`` -> one uint8 ``3 x H' x W'`` grid (torchvision's ``make_grid``;
    ``nrow`` images per row, default about square; black padding)."""
    nrow = nrow or max(1, int(np.ceil(np.sqrt(images.shape[0]))))
    return make_grid(images.cpu(), nrow=nrow, padding=padding, pad_value=0)


class _Progress:
    """tqdm when it is installed, otherwise mmengine's text progress bar; silent if disabled."""

    def __init__(self, total: int, enabled: bool = True, desc: str = 'generating'):
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit='img')
        except ImportError:
            from mmengine.utils import ProgressBar
            self.bar = ProgressBar(total)

    def update(self, n: int) -> None:
        if self.bar is None:
            return
        if hasattr(self.bar, 'n'):  # tqdm
            self.bar.update(n)
        else:
            for _ in range(n):
                self.bar.update()

    def close(self) -> None:
        if self.bar is not None and hasattr(self.bar, 'close'):
            self.bar.close()
        elif self.bar is not None:
            print()


def generate_to_dir(model: nn.Module, sampler: ADDPSampler, out_dir: str, start: int, stop: int,
                    batch_size: int = 64, seed: int = 0,
                    device: Optional[Union[str, torch.device]] = None,
                    autocast_dtype: Optional[Union[str, torch.dtype]] = None,
                    progress: bool = True, save_trajectory: bool = False) -> List[str]:
    """Generate images ``start .. stop-1`` into ``out_dir/{index:06d}.png``; with
    ``save_trajectory`` also ``out_dir/trajectory/{index:06d}.png``, each image's denoising as a
    strip of pictures (:class:`~addp_mm.apis.edit.TrajectoryPictures`).

    One generator seeded with ``seed`` draws every batch in turn, so the images depend on
    ``seed`` and ``batch_size`` only (ranks pass ``seed + rank``).
    """
    from .edit import TrajectoryPictures, token_factor
    if batch_size < 1:
        raise UsageError(f'batch_size must be >= 1, got {batch_size}')
    os.makedirs(out_dir, exist_ok=True)
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    bar = _Progress(stop - start, enabled=progress)
    paths = []
    try:
        for first in range(start, stop, batch_size):
            n = min(batch_size, stop - first)
            pictures = TrajectoryPictures(token_factor(model)) if save_trajectory else None
            images = to_uint8(sampler.sample(model, n, generator=generator, device=device,
                                             autocast_dtype=autocast_dtype, on_step=pictures)).cpu()
            for i in range(n):
                path = osp.join(out_dir, IMAGE_NAME.format(first + i))
                save_image(images[i], path)
                paths.append(path)
                if pictures is not None:
                    os.makedirs(osp.join(out_dir, TRAJECTORY_DIR), exist_ok=True)
                    save_image(pictures.strip(i),
                               osp.join(out_dir, TRAJECTORY_DIR, IMAGE_NAME.format(first + i)))
            bar.update(n)
    finally:
        bar.close()
    return paths


def init_launcher(launcher: str = 'none') -> Tuple[int, int, torch.device]:
    """Start ``torch.distributed`` for ``--launcher pytorch`` (torchrun sets the environment) with
    mmengine's ``init_dist`` (nccl) on GPUs, gloo on a CPU-only machine. Returns
    ``(rank, world_size, device)``."""
    if launcher not in ('none', 'pytorch'):
        raise UsageError(f'launcher {launcher!r}: choose none or pytorch')
    cuda = torch.cuda.is_available()
    if launcher == 'pytorch' and not is_distributed():
        if cuda:
            init_dist('pytorch')
        else:  # mmengine's init_dist assumes CUDA
            torch.distributed.init_process_group(backend='gloo')
    rank, world_size = get_dist_info()
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    device = torch.device('cuda', local_rank) if cuda else torch.device('cpu')
    return rank, world_size, device


def close_launcher() -> None:
    """End the process group :func:`init_launcher` started (no-op without one)."""
    from addp_mm.engine.runner_factory import close_process_group
    close_process_group()


__all__ = ['build_generation_model', 'rank_range', 'generate_to_dir', 'image_grid', 'write_grid',
           'init_launcher', 'barrier', 'close_launcher', 'IMAGE_NAME', 'GRID_NAME']
