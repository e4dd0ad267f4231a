"""Unconditional image generation with a pretrained ADDP model.

Generation alternates the two halves of ADDP for ``T`` steps, starting from a grid where every
token is unknown:

    pixels x ──encoder──> features ──decoder (+ known tokens)──> logits over the codebook
    logits ──sample──> a code for every unknown position
           ──confidence = log p(code) + temperature * Gumbel──> keep the most confident codes,
                                                               re-mask the rest (schedule)
    known codes (hard) + re-masked positions (soft: E_p[code]) ──VQ decoder──> next pixels x

The image is the last ``x``. One position is still soft-embedded after the last step (the mask
length is clipped to at least 1), exactly as in the release.

Editing (:meth:`ADDPSampler.edit`) is the same process started from an image's tokens with some
positions unknown: the known tokens never change, the unknown ones start masked, the first pixels
are decoded from the known codes and, at the unknown positions, the expected code under a uniform
distribution, and the schedule counts the unknown positions instead of the whole grid (MaskGIT's
rule for inpainting). On a token grid larger than the model's (outpainting) the encoder's and the
decoder's position tables are resized to it.

Sizes come from the model: the token grid from the encoder's image size and the tokenizer's
downsampling factor, the codebook size and the code width from the tokenizer
(``model.target_generator.tokenizer``). The MAGE token predictor is not used.
"""
import math
from contextlib import contextmanager, nullcontext
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import TASK_UTILS

from addp_mm.errors import UsageError

SCHEDULES = ('cosine', 'linear')
TEMPERATURE_MODES = ('dynamic', 'static')
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16,
                   'fp16': torch.float16, 'float16': torch.float16}


def unwrap_model(model: nn.Module) -> nn.Module:
    """The ADDP model inside a (Mm)DistributedDataParallel wrapper, or the model itself."""
    return model.module if hasattr(model, 'module') else model


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class GenerationGeometry:
    """Token grid, codebook and widths of an ADDP model, read from its parts."""

    def __init__(self, model: nn.Module):
        for part in ('backbone', 'neck', 'target_generator'):
            if getattr(model, part, None) is None:
                raise UsageError(f'ADDPSampler needs an ADDP model with a {part!r}; got '
                                f'{type(model).__name__}')
        neck, tokenizer, backbone = model.neck, model.target_generator.tokenizer, model.backbone
        self.num_tokens = int(neck.num_patches)
        img_size = getattr(backbone, 'img_size', None)
        if img_size is not None:
            self.grid_hw = tuple(tokenizer.grid_size(img_size))
        else:
            side = math.isqrt(self.num_tokens)
            self.grid_hw = (side, side)
        if self.grid_hw[0] * self.grid_hw[1] != self.num_tokens:
            raise UsageError(
                f'the tokenizer grid {self.grid_hw} (image {img_size}, downsampling '
                f'{tokenizer.downsample_factor}) does not match the decoder\'s '
                f'{self.num_tokens} positions')
        self.codebook_size = int(tokenizer.n_embed)
        if int(getattr(neck, 'codebook_size', self.codebook_size)) != self.codebook_size:
            raise UsageError(f'decoder codebook_size {neck.codebook_size} != tokenizer n_embed '
                             f'{self.codebook_size}')
        self.code_dim = int(tokenizer.embed_dim)
        self.encoder_dim = int(neck.embed_dim)
        # any id works for the initial, fully masked grid; the mask id says what it means
        self.initial_token = int(getattr(neck, 'mask_token_id', 0))


def nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The nucleus of ``top_p``: bool, shaped as ``sorted_probs`` (probabilities in descending
    order along the last dimension), True on the shortest prefix whose mass reaches ``top_p``
    (everything when the whole mass is below it). A code is in it when the codes ranked above it
    sum to less than ``top_p``, so the most likely code always is."""
    cum = sorted_probs.cumsum(-1)
    return torch.cat([torch.ones_like(cum[..., :1], dtype=torch.bool), cum[..., :-1] < top_p],
                     dim=-1)


@TASK_UTILS.register_module()
class ADDPSampler:
    """ADDP's iterative unconditional sampler.

    Args:
        num_steps: number of denoising steps ``T`` (release: 20; 256 with the linear schedule).
        schedule: ``'cosine'``: after step ``s`` (0-based) ``ceil(N * cos(pi/2 * (s+1)/T))``
            positions stay masked; ``'linear'``: ``ceil(N * (1 - (s+1)/T))``; clipped to [1, N].
        choice_temperature: scale of the Gumbel noise added to the confidences (release 6.0).
            0 ranks positions by ``log p(sampled code)`` alone.
        temperature_mode: ``'dynamic'`` anneals the scale to ``choice_temperature * (1 - (s+1)/T)``
            (release default); ``'static'`` keeps it constant.
        top_p: ``None`` samples from the full categorical distribution (release default);
            otherwise nucleus sampling over the smallest set of codes whose probability reaches
            ``top_p`` (the most likely code is always in it, so a tiny ``top_p`` is greedy).
    """

    def __init__(self, num_steps: int = 20, schedule: str = 'cosine',
                 choice_temperature: float = 6.0, temperature_mode: str = 'dynamic',
                 top_p: Optional[float] = None):
        if int(num_steps) < 1:
            raise UsageError(f'num_steps must be >= 1, got {num_steps}')
        if schedule not in SCHEDULES:
            raise UsageError(f'schedule={schedule!r}: choose one of {SCHEDULES}')
        if temperature_mode not in TEMPERATURE_MODES:
            raise UsageError(f'temperature_mode={temperature_mode!r}: choose one of '
                             f'{TEMPERATURE_MODES}')
        if choice_temperature < 0:
            raise UsageError(f'choice_temperature must be >= 0, got {choice_temperature}')
        if top_p is not None and not 0. < top_p <= 1.:
            raise UsageError(f'top_p must be in (0, 1] or None, got {top_p}')
        self.num_steps = int(num_steps)
        self.schedule = schedule
        self.choice_temperature = float(choice_temperature)
        self.temperature_mode = temperature_mode
        self.top_p = None if top_p is None else float(top_p)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_steps={self.num_steps}, schedule={self.schedule!r}, '
                f'choice_temperature={self.choice_temperature}, '
                f'temperature_mode={self.temperature_mode!r}, top_p={self.top_p})')

    # ------------------------------------------------------------------ schedule
    def mask_ratio(self, step: int) -> float:
        """Fraction of positions still masked after step ``step`` (0-based)."""
        progress = (step + 1) / self.num_steps
        if self.schedule == 'cosine':
            return math.cos(math.pi / 2. * progress)
        return 1. - progress

    def num_masked(self, step: int, num_tokens: int) -> int:
        """``clip(ceil(N * ratio(step)), 1, N)``: positions still masked after ``step``."""
        return int(min(max(math.ceil(num_tokens * self.mask_ratio(step)), 1), num_tokens))

    def temperature(self, step: int) -> float:
        """Scale of the Gumbel noise on the confidences at ``step``."""
        if self.temperature_mode == 'static':
            return self.choice_temperature
        return self.choice_temperature * (1. - (step + 1) / self.num_steps)

    # ------------------------------------------------------------------ one step, piece by piece
    @staticmethod
    def predict_logits(model: nn.Module, pixels: Optional[torch.Tensor], tokens: torch.Tensor,
                       mask: torch.Tensor, grid_hw: Optional[Tuple[int, int]] = None,
                       num_visible: Optional[int] = None) -> torch.Tensor:
        """Codebook logits ``B x N x K`` (float32) of the decoder on ``pixels`` with the known
        ``tokens`` (``mask`` = 1 where unknown); ``grid_hw``: the token grid when it is not the
        model's own; ``num_visible``: the known positions per row when the caller knows them
        (the sampler does, from its schedule), else the decoder reads them from ``mask`` (a
        device read).

        ``pixels=None`` means that every position is masked (the first step): the decoder then
        replaces all encoder features by its mask token, so the encoder is not run. Only the
        grid positions' codebook logits are computed (not the whole vocabulary).
        """
        model = unwrap_model(model)
        B, N = mask.shape
        if pixels is None:
            enc = torch.zeros(B, N + 1, model.neck.embed_dim, device=mask.device)
        else:
            enc = model.encode(pixels)
        return model.neck(enc, tokens, mask, num_visible, num_codes=model.neck.codebook_size,
                          grid_hw=grid_hw).float()

    def sample_ids(self, logits: torch.Tensor, generator: Optional[torch.Generator] = None
                   ) -> torch.Tensor:
        """A code per position, ``B x N`` int64: categorical, or nucleus when ``top_p`` is set."""
        probs = logits.float().softmax(-1)
        flat = probs.reshape(-1, probs.shape[-1])
        if self.top_p is None:
            ids = torch.multinomial(flat, 1, generator=generator)
        else:
            sorted_probs, order = torch.sort(flat, dim=-1, descending=True, stable=True)
            keep = nucleus(sorted_probs, self.top_p)
            picked = torch.multinomial(sorted_probs * keep, 1, generator=generator)
            ids = order.gather(-1, picked)
        return ids.view(probs.shape[:-1])

    @staticmethod
    def gumbel_noise(like: torch.Tensor, generator: Optional[torch.Generator] = None
                     ) -> torch.Tensor:
        """Standard Gumbel noise shaped as ``like``: ``-log(E)`` with ``E ~ Exp(1)`` (the same law
        as ``-log(-log(U))``, ``U ~ U(0, 1)``)."""
        e = torch.empty_like(like, dtype=torch.float32).exponential_(generator=generator)
        return -e.clamp_min(torch.finfo(e.dtype).tiny).log()

    def next_mask(self, logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, step: int,
                  generator: Optional[torch.Generator] = None,
                  gumbel: Optional[torch.Tensor] = None,
                  num_unknown: Optional[int] = None) -> torch.Tensor:
        """Bool ``B x N``: the ``num_masked(step, num_unknown)`` least confident positions of
        ``tokens`` (``num_unknown``: the positions unknown at the start, default all ``N``).

        Confidence is ``log p(token) + temperature(step) * g`` at masked positions and ``+inf``
        at known ones, so known tokens stay known; ``g`` is ``gumbel`` if given, else drawn with
        :meth:`gumbel_noise` from ``generator``.
        """
        B, N = tokens.shape
        log_p = logits.float().log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        temp = self.temperature(step)
        if temp > 0:
            if gumbel is None:
                gumbel = self.gumbel_noise(log_p, generator)
            log_p = log_p + temp * gumbel
        confidence = torch.where(mask.bool(), log_p, torch.full_like(log_p, math.inf))
        num = self.num_masked(step, N if num_unknown is None else num_unknown)
        lowest = confidence.topk(num, dim=-1, largest=False).indices
        return torch.zeros(B, N, dtype=torch.bool, device=tokens.device).scatter_(1, lowest, True)

    @staticmethod
    def render(model: nn.Module, logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
               grid_hw: Optional[Tuple[int, int]] = None,
               autocast: Optional[torch.dtype] = None) -> torch.Tensor:
        """Pixels ``B x 3 x H x W`` (float32, unclamped): the VQ decoder on the expected code
        ``softmax(logits) @ codebook`` where ``mask`` is set, on ``codebook[tokens]`` elsewhere."""
        tokenizer = unwrap_model(model).target_generator.tokenizer
        B, N = tokens.shape
        if grid_hw is None:
            side = math.isqrt(N)
            grid_hw = (side, side)
        hard = tokenizer.embed_indices(tokens, grid_hw).float()
        z = tokenizer.mix_codes(mask, logits.float().softmax(-1), hard)
        with _autocast(z.device, autocast):
            return tokenizer.decode(z).float()

    # ------------------------------------------------------------------ the whole loop
    @torch.no_grad()
    def sample(self, model: nn.Module, num_images: int, seed: Optional[int] = None,
               generator: Optional[torch.Generator] = None,
               device: Optional[Union[str, torch.device]] = None,
               autocast_dtype: Optional[Union[str, torch.dtype]] = None,
               return_trajectory: bool = False,
               on_step: Optional[Callable[[int, Dict], None]] = None
               ) -> Union[torch.Tensor, Tuple[torch.Tensor, List[Dict]]]:
        """Generate ``num_images`` images in one batch.

        Args:
            model: an ``ADDP`` model (or a DDP wrapper of one); put in eval mode while sampling.
            num_images: batch size.
            seed: seeds a new generator on ``device`` (ignored when ``generator`` is given).
                Same seed, device and settings -> same images.
            generator: a ``torch.Generator`` on ``device``; keep passing the same one to draw
                successive batches of one seeded stream.
            device: where to sample (default: the model's device).
            autocast_dtype: ``torch.bfloat16`` / ``torch.float16`` (or ``'bf16'`` / ``'fp16'``)
                runs the encoder, decoder and VQ decoder under autocast; sampling and
                confidences stay in float32.
            return_trajectory: also return one dict per step with the input ``mask``, ``logits``,
                ``sampled`` ids, ``tokens``, next ``mask_next``, ``mask_len``, ``pixels`` and the
                ``pixels_in`` the step encoded (``None`` when nothing was known).
            on_step: called with ``(step, that dict)`` after every step (e.g. to keep pictures
                of the trajectory without holding every step's logits).

        Returns:
            images ``B x 3 x H x W`` float32, unclamped (convert with
            :func:`addp_mm.models.utils.to_uint8`), and the
            trajectory when asked for.
        """
        model = unwrap_model(model)
        geo = GenerationGeometry(model)
        device = _device(model, device)
        B, N = int(num_images), geo.num_tokens
        tokens = torch.full((B, N), geo.initial_token, dtype=torch.long, device=device)
        mask = torch.ones(B, N, dtype=torch.bool, device=device)
        pixels, _, trajectory = self._denoise(model, tokens, mask, N, None, geo.grid_hw,
                                              _generator(device, generator, seed),
                                              _autocast_dtype(autocast_dtype), return_trajectory,
                                              on_step)
        return (pixels, trajectory) if return_trajectory else pixels

    @torch.no_grad()
    def edit(self, model: nn.Module, tokens: torch.Tensor, unknown: torch.Tensor,
             grid_hw: Optional[Tuple[int, int]] = None, seed: Optional[int] = None,
             generator: Optional[torch.Generator] = None,
             autocast_dtype: Optional[Union[str, torch.dtype]] = None,
             return_trajectory: bool = False,
             on_step: Optional[Callable[[int, Dict], None]] = None
             ) -> Union[Tuple[torch.Tensor, torch.Tensor],
                        Tuple[torch.Tensor, torch.Tensor, List[Dict]]]:
        """Generate the ``unknown`` positions of a token grid, keeping the others (inpainting,
        outpainting, variations: :mod:`addp_mm.apis.edit`).

        Args:
            model: an ``ADDP`` model (or a DDP wrapper of one).
            tokens: ``B x N`` token ids (the tokenizer's, raster order); the unknown ones are not
                read.
            unknown: ``B x N`` bool, True where the tokens are to be generated; the same number
                in every row, at least one, fewer than ``N``.
            grid_hw: the token grid ``(h, w)``, ``h * w = N`` (default: the model's own).
            seed, generator, autocast_dtype, return_trajectory, on_step: as in :meth:`sample`.

        Returns:
            images ``B x 3 x (f*h) x (f*w)`` float32, unclamped, their tokens ``B x N`` (the
            known ones as given), and the trajectory when asked for: its first entry's
            ``pixels_in`` are the pixels the first step encodes.
        """
        model = unwrap_model(model)
        geo = GenerationGeometry(model)
        B, N = tokens.shape
        grid_hw = tuple(grid_hw) if grid_hw is not None else geo.grid_hw
        if unknown.shape != (B, N) or grid_hw[0] * grid_hw[1] != N:
            raise UsageError(f'edit: tokens {tuple(tokens.shape)}, unknown {tuple(unknown.shape)} '
                             f'and the grid {grid_hw} do not fit together')
        # the one read of an edit (none on the device when ``unknown`` is a host tensor, as
        # addp_mm.apis.edit passes it): the check and the schedule's count
        counts = unknown.bool().sum(1).tolist()
        if len(set(counts)) > 1 or not 0 < counts[0] < N:
            raise UsageError(f'edit: every row needs the same number of unknown positions, '
                             f'between 1 and {N - 1}; got {counts}')
        unknown = unknown.to(device=tokens.device, dtype=torch.bool)
        dtype = _autocast_dtype(autocast_dtype)
        # the first pixels: the known codes, and the expected code of a uniform distribution
        # (the ids given at unknown positions are not read)
        uniform = torch.zeros(B, N, geo.codebook_size, device=tokens.device)
        known_codes = torch.where(unknown, torch.zeros_like(tokens), tokens)
        pixels = self.render(model, uniform, known_codes, unknown, grid_hw, dtype)
        tokens = torch.where(unknown, torch.full_like(tokens, geo.initial_token), tokens)
        pixels, tokens, trajectory = self._denoise(
            model, tokens, unknown, counts[0], pixels, grid_hw,
            _generator(tokens.device, generator, seed), dtype, return_trajectory, on_step)
        return (pixels, tokens, trajectory) if return_trajectory else (pixels, tokens)

    def _denoise(self, model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor,
                 num_unknown: int, pixels: Optional[torch.Tensor], grid_hw: Tuple[int, int],
                 generator: torch.Generator, dtype: Optional[torch.dtype],
                 return_trajectory: bool, on_step: Optional[Callable[[int, Dict], None]] = None):
        """The alternating steps from ``tokens`` / ``mask`` (True = unknown, ``num_unknown`` in
        every row) and ``pixels`` (``None``: nothing known yet). Returns the last pixels, the
        last tokens and the trajectory (empty unless asked for).

        Nothing is read back from the device: the masked count of every step is the schedule's
        (a host number), which the decoder and the trajectory take."""
        trajectory = []
        N = tokens.shape[1]
        num_masked = num_unknown
        with _eval_mode(model):
            for step in range(self.num_steps):
                pixels_in = pixels
                with _autocast(tokens.device, dtype):
                    logits = self.predict_logits(model, pixels, tokens, mask, grid_hw,
                                                 num_visible=N - num_masked)
                sampled = self.sample_ids(logits, generator)
                new_tokens = torch.where(mask, sampled, tokens)
                mask_next = self.next_mask(logits, new_tokens, mask, step, generator,
                                           num_unknown=num_unknown)
                num_masked = self.num_masked(step, num_unknown)  # what next_mask masked
                pixels = self.render(model, logits, new_tokens, mask_next, grid_hw, dtype)
                if return_trajectory or on_step is not None:
                    entry = dict(mask=mask, logits=logits, sampled=sampled, tokens=new_tokens,
                                 mask_next=mask_next, pixels=pixels, pixels_in=pixels_in,
                                 mask_len=num_masked if len(mask) else 0)
                    if on_step is not None:
                        on_step(step, entry)
                    if return_trajectory:
                        trajectory.append(entry)
                tokens, mask = new_tokens, mask_next
        return pixels, tokens, trajectory


def _device(model: nn.Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def _generator(device: torch.device, generator: Optional[torch.Generator],
               seed: Optional[int]) -> torch.Generator:
    """``generator``, else a new one on ``device`` seeded with ``seed`` (randomly without)."""
    if generator is not None:
        return generator
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def _autocast_dtype(dtype: Optional[Union[str, torch.dtype]]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in AUTOCAST_DTYPES:
        raise UsageError(f'autocast dtype {dtype!r}: choose one of {sorted(AUTOCAST_DTYPES)}')
    return AUTOCAST_DTYPES[dtype]


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def build_sampler(sampler_cfg: Optional[Union[Dict, ADDPSampler]] = None,
                  **overrides) -> ADDPSampler:
    """An :class:`ADDPSampler` from a config dict (``type`` optional) with ``overrides`` applied
    (``None`` values are ignored)."""
    if isinstance(sampler_cfg, ADDPSampler) and not any(v is not None for v in overrides.values()):
        return sampler_cfg
    cfg = dict(type='ADDPSampler')
    if isinstance(sampler_cfg, ADDPSampler):
        cfg.update(num_steps=sampler_cfg.num_steps, schedule=sampler_cfg.schedule,
                   choice_temperature=sampler_cfg.choice_temperature,
                   temperature_mode=sampler_cfg.temperature_mode, top_p=sampler_cfg.top_p)
    elif sampler_cfg is not None:
        cfg.update(dict(sampler_cfg))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return TASK_UTILS.build(cfg)
