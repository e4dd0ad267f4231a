"""A hook that shows how generation evolves while ADDP pretrains."""
import os
import os.path as osp
from typing import Dict, Optional, Union

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torchvision.utils import make_grid

from addp_mm.errors import UsageError
from addp_mm.models.generation import ADDPSampler, build_sampler, unwrap_model
from addp_mm.models.utils import save_image, to_uint8


@HOOKS.register_module()
class GenerationVisHook(Hook):
    """Every ``interval`` training iterations, sample a grid of images from the model being
    pretrained and save it to ``work_dir/samples/iter_{k}.png`` (``k`` =
    iterations done), and to the visualizer's backends (e.g. TensorBoard) under ``name``.

    Only the main process samples; the others go on training. The same seed is used every time,
    so successive grids show the same random draws as the model improves.

    Args:
        interval: iterations between grids.
        num_images: images per grid.
        nrow: images per grid row (default about square).
        sampler: an :class:`ADDPSampler` or its config (release settings by default).
        seed: seed of every grid.
        out_dir: folder of the PNG files (default ``work_dir/samples``).
        autocast_dtype: ``'bf16'`` / ``'fp16'`` to sample under autocast.
        name: image name for the visualizer backends.

    Example::

        custom_hooks = [dict(type='GenerationVisHook', interval=5000, num_images=16)]
    """

    priority = 'LOW'

    def __init__(self, interval: int = 5000, num_images: int = 16, nrow: Optional[int] = None,
                 sampler: Union[Dict, ADDPSampler, None] = None, seed: int = 0,
                 out_dir: Optional[str] = None, autocast_dtype: Optional[str] = None,
                 name: str = 'samples'):
        if interval < 1 or num_images < 1:
            raise UsageError(f'interval and num_images must be >= 1, got {interval}, {num_images}')
        self.interval = interval
        self.num_images = num_images
        self.nrow = nrow
        self.sampler = build_sampler(sampler)
        self.seed = seed
        self.out_dir = out_dir
        self.autocast_dtype = autocast_dtype
        self.name = name

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self.draw(runner, runner.iter + 1)

    def draw(self, runner, step: int) -> Optional[str]:
        """Sample, save ``iter_{step}.png`` and send it to the visualizer. Returns the path."""
        if not is_main_process():
            return None
        model = unwrap_model(runner.model)
        device = next(model.parameters()).device
        images = self.sampler.sample(model, self.num_images, seed=self.seed, device=device,
                                     autocast_dtype=self.autocast_dtype)
        nrow = self.nrow or max(1, int(np.ceil(np.sqrt(self.num_images))))
        grid = make_grid(to_uint8(images).cpu(), nrow=nrow, padding=2, pad_value=0)
        out_dir = self.out_dir or osp.join(runner.work_dir, 'samples')
        os.makedirs(out_dir, exist_ok=True)
        path = osp.join(out_dir, f'iter_{step}.png')
        save_image(grid, path)
        visualizer = getattr(runner, 'visualizer', None)
        if visualizer is not None:
            visualizer.add_image(self.name, grid.permute(1, 2, 0).numpy(), step=step)
        print_log(f'GenerationVisHook: {self.num_images} samples -> {path}', logger='current')
        return path
