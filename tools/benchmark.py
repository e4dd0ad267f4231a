"""Side-by-side performance table of addp-mm against reference implementations.

    python tools/benchmark.py                      # small dims, CPU, a few minutes
    python tools/benchmark.py --json > bench.json  # the rows as a JSON list
    python tools/benchmark.py --markdown docs/benchmarks/cpu_default.md   # a page with the machine
    python tools/benchmark.py --arch base --device cuda --rows pretrain generation

Every row is measured in this one process: the two sides (ours, the reference) run interleaved,
alternating which goes first, after ``--warmup`` untimed runs; the median of ``--repeats`` runs is
reported. Rows:

1. ``vit``: ``ADDPViT`` forward+backward images/s against timm's ``VisionTransformer`` of the same
   dims with the same weights (global attention, 224 and 256 px, batch 8).
2. ``flops``: the encoder's achieved FLOP/s (forward, counted by ``FlopCounterMode``) as a fraction
   of a large ``torch.mm`` in the same dtype measured here.
3. ``vitdet``: ViTDet window attention + relative position at 512 and 1024 px against all-global
   attention (speed and memory), and the memory saved by ``with_cp``.
4. ``pretrain``: one pretraining step (forward + backward, no optimizer update) against the
   release-style path of ``tools/benchmark_release_path.py`` (token predictor run twice, attention
   as explicit matmuls without SDPA, NCHW VQGAN), in fp32 and, like with like, under the release's
   own autocast (the device's AMP dtype over every part: bf16 on a CPU that computes it natively,
   fp16 on CUDA), for each precision mode a config can choose (``pretrain_modes``: fp32, the
   frozen parts' ``'auto'``, the fastest = ``'auto'`` + AMP, the release's precision = AMP over
   every part); the note gives the loss's relative difference to fp32 (contract: < 1e-2).
   ``parts`` splits the step into its pieces, in fp32 and in the fastest mode against the
   release under its autocast.
5. ``generation``: images/s at ``--steps`` steps against the release-style sampler.
6. ``onnx`` (not in the default set): latency of the exported classifier, segmenter and detector
   backbone + neck in ONNX Runtime (CPU) against eager PyTorch, batch 1, at the demo configs' sizes
   and (``--onnx-base``) the ViT-B configs' (classifier 256 px, UperNet 512 px); the note gives
   the max relative difference of the outputs (``tools/deploy/export.py`` checks the same).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the memory held before the run; on
a CPU the peak of live tensor bytes (at operator granularity) over one run recorded by
``torch.profiler`` with ``profile_memory=True`` (RSS and tracemalloc do not see torch's
allocations precisely). ``ratio`` is always "how many times better ours is": ours/reference for
throughputs, reference/ours for times and memory.
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
import time
from contextlib import nullcontext
from functools import partial
from typing import Callable, Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from cli import UsageError, add_debug_flag, run_tool  # noqa: E402

ROW_GROUPS = ('vit', 'flops', 'vitdet', 'pretrain', 'parts', 'generation', 'onnx')
DEFAULT_ROWS = ROW_GROUPS[:-1]
ARCH_NAMES = ('bench', 'demo', 'base', 'large')
TIMER_NAMES = ('wall', 'process')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='bench', choices=ARCH_NAMES,
                   help="'bench': ViT 384x6, 2-block decoder, VQGAN width 64 (default); the "
                   'release sizes base / large')
    p.add_argument('--img-size', type=int, default=256, help='pretraining / generation size')
    p.add_argument('--batch', type=int, default=4, help='pretraining batch')
    p.add_argument('--gen-batch', type=int, default=1,
                   help='generation batch (1 keeps the default table within a few minutes)')
    p.add_argument('--steps', type=int, default=20, help='generation steps')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--rows', nargs='+', default=list(DEFAULT_ROWS), choices=ROW_GROUPS,
                   help=f'row groups (default: {" ".join(DEFAULT_ROWS)})')
    p.add_argument('--onnx-base', action='store_true',
                   help='onnx rows: also the ViT-B classifier and segmenter (minutes)')
    p.add_argument('--compile', action='store_true',
                   help='also measure the fp32 step with torch.compile on the encoder + decoder')
    p.add_argument('--timer', default='wall', choices=TIMER_NAMES,
                   help="'wall' (default) or 'process': this process's CPU time, steadier on a "
                   'machine shared with other work (use with --threads 1); CPU only')
    p.add_argument('--json', action='store_true', help='print the rows as a JSON list')
    p.add_argument('--markdown', metavar='FILE',
                   help='also write the table as a Markdown page (the command, the machine, the '
                        'rows), e.g. under docs/benchmarks/')
    add_debug_flag(p)
    args = p.parse_args(argv)
    if args.timer == 'process' and args.device != 'cpu':
        p.error("--timer process measures CPU time: use it with --device cpu")
    return args


def check_device(args) -> None:
    """A ``--device`` this machine lacks is the user's mistake (checked before the heavy imports)."""
    import torch
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'--device {args.device}: this machine has no CUDA device (torch '
                         f'{torch.__version__}); measure on the CPU (--device cpu)')


if __name__ == '__main__':  # --help, argument errors and a missing device before the heavy imports
    run_tool(lambda argv: check_device(parse_args(argv)), exit_on_success=False)

import torch  # noqa: E402

import addp_mm  # noqa: E402,F401
from addp_mm.models.utils.precision import (  # noqa: E402
    frozen_precisions, native_bf16, precision_context, resolve_precision)

ARCHS = {
    # the default measurement dims: ViT 384x6, a 2-block decoder, a same-size MAGE predictor
    'bench': dict(embed_dims=384, num_layers=6, num_heads=6, feedforward_channels=1536,
                  decoder_depth=2, predictor_decoder_depth=2, vq_width=64),
    # a smoke test of the script itself (seconds)
    'demo': dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=256,
                 decoder_depth=1, predictor_decoder_depth=1, vq_width=32),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072,
                 decoder_depth=8, predictor_decoder_depth=8, vq_width=128),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096,
                  decoder_depth=8, predictor_decoder_depth=8, vq_width=128),
}


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# ``--timer``: wall-clock seconds, or this process's CPU seconds (all its threads), which on a
# machine shared with other work counts only the time the process actually ran (with
# ``--threads 1`` it is the work done; with more threads it includes OpenMP's spin-waits)
TIMERS = dict(wall=time.perf_counter, process=time.process_time)
assert set(TIMERS) == set(TIMER_NAMES) and set(ARCHS) == set(ARCH_NAMES)
_timer = time.perf_counter


def interleaved(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int,
                device: torch.device) -> Dict[str, float]:
    """Median seconds per call of each function, run interleaved (order alternating)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    order = list(fns)
    for r in range(repeats):
        for k in (order if r % 2 == 0 else order[::-1]):
            _sync(device)
            t = _timer()
            fns[k]()
            _sync(device)
            times[k].append(_timer() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_memory(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory (MiB) of one call above what was allocated before it (see the module doc)."""
    if device.type == 'cuda':
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    cur = best = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        best = max(best, cur)
    return best / 2**20


class Table:

    def __init__(self):
        self.rows: List[Dict] = []

    def add(self, name: str, ours: float, reference: float, unit: str, higher_is_better: bool,
            target: Optional[str] = None, note: str = '') -> None:
        if higher_is_better:
            ratio = ours / reference if reference else float('nan')
        else:
            ratio = reference / ours if ours else float('nan')
        row = dict(name=name, ours=round(ours, 4), reference=round(reference, 4), unit=unit,
                   ratio=round(ratio, 3), target=target)
        if note:
            row['note'] = note
        self.rows.append(row)
        print(self.format_row(row), file=sys.stderr, flush=True)

    @staticmethod
    def format_row(r: Dict) -> str:
        target = r['target'] or '-'
        line = (f"{r['name']:<46} {r['ours']:>11.4g} {r['reference']:>11.4g} {r['unit']:<10} "
                f"{r['ratio']:>7.3f}x  {target:<8}")
        return line + (f"  {r['note']}" if r.get('note') else '')

    def format(self) -> str:
        head = (f"{'row':<46} {'ours':>11} {'reference':>11} {'unit':<10} {'ratio':>8}  "
                f"{'target':<8}  note")
        return '\n'.join([head, '-' * len(head)] + [self.format_row(r) for r in self.rows])


# ----------------------------------------------------------------------------------------------
# builders
# ----------------------------------------------------------------------------------------------
def vit_arch(a: Dict) -> Dict:
    return {k: a[k] for k in ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels')}


def build_addp(a: Dict, img_size: int, device: torch.device, compile_parts: bool = False):
    from mmengine.registry import MODELS
    dim, heads = a['embed_dims'], a['num_heads']
    cfg = dict(
        type='ADDP',
        backbone=dict(type='ADDPViT', arch=vit_arch(a), img_size=img_size, patch_size=16,
                      pre_norm=True, final_norm=True, out_type='raw'),
        # width, token grid and codebook come from the backbone and the tokenizer
        neck=dict(type='ADDPDecoder', depth=a['decoder_depth'], num_heads=heads, drop=0.0),
        head=dict(type='ADDPSoftTargetLoss'),
        target_generator=dict(
            type='ADDPNoiser',
            tokenizer=dict(type='VQGANTokenizer', ch=a['vq_width'], ch_mult=[1, 1, 2, 2, 4],
                           num_res_blocks=2, resolution=img_size, precision='fp32'),
            token_predictor=dict(type='MAGETokenPredictor', embed_dim=dim, depth=a['num_layers'],
                                 num_heads=heads, decoder_embed_dim=dim,
                                 decoder_depth=a['predictor_decoder_depth'],
                                 decoder_num_heads=heads, precision='fp32'),
            mask_schedule=dict(type='MaskSchedule')))
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.to(device).train()
    return model


def set_frozen_precision(model, mode: Optional[str]) -> None:
    """The frozen parts' mode as a whole (``ADDPNoiser.precision``, one of ``FROZEN_MODES``)."""
    model.target_generator.precision = mode


# ----------------------------------------------------------------------------------------------
# row groups
# ----------------------------------------------------------------------------------------------
def rows_vit(t: Table, args, a: Dict, device: torch.device) -> None:
    from timm.layers import LayerNorm
    from timm.models.vision_transformer import VisionTransformer
    from mmengine.registry import MODELS
    for size in (224, 256):
        torch.manual_seed(0)
        ours = MODELS.build(dict(type='ADDPViT', arch=vit_arch(a), img_size=size, out_type='raw',
                                 final_norm=True)).to(device)
        ours.init_weights()
        ref = VisionTransformer(img_size=size, patch_size=16, embed_dim=a['embed_dims'],
                                depth=a['num_layers'], num_heads=a['num_heads'],
                                mlp_ratio=a['feedforward_channels'] / a['embed_dims'],
                                qkv_bias=True, num_classes=0,
                                norm_layer=partial(LayerNorm, eps=1e-6)).to(device)
        missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
        if missing or unexpected:
            raise RuntimeError(f'timm ViT does not take our weights: {missing} {unexpected}')
        x = torch.randn(8, 3, size, size, device=device)
        with torch.no_grad():
            err = float((ours(x)[-1] - ref.forward_features(x)).abs().max())

        def step_ours():
            ours(x)[-1].sum().backward()

        def step_ref():
            ref.forward_features(x).sum().backward()

        sec = interleaved(dict(ours=step_ours, ref=step_ref), args.repeats, args.warmup, device)
        t.add(f'vit fwd+bwd {size}px b8', 8 / sec['ours'], 8 / sec['ref'], 'img/s', True, '>=1.0',
              f'vs timm VisionTransformer, same weights (max abs diff {err:.1e})')
        t.add(f'vit fwd+bwd {size}px b8 peak memory', peak_memory(step_ours, device),
              peak_memory(step_ref, device), 'MiB', False)


def rows_flops(t: Table, args, a: Dict, device: torch.device) -> None:
    from torch.utils.flop_counter import FlopCounterMode
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    enc = MODELS.build(dict(type='ADDPViT', arch=vit_arch(a), img_size=args.img_size,
                            out_type='raw')).to(device).eval()
    x = torch.randn(8, 3, args.img_size, args.img_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        enc(x)
    flops = counter.get_total_flops()
    n = 4096 if device.type == 'cuda' else 2048
    modes = [('fp32', None)]
    if native_bf16(device):
        modes.append(('bf16', torch.bfloat16))
    for name, dtype in modes:
        m1 = torch.randn(n, n, device=device, dtype=dtype or torch.float32)
        m2 = torch.randn(n, n, device=device, dtype=dtype or torch.float32)

        def run_enc():
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                enc(x)

        sec = interleaved(dict(enc=run_enc, mm=lambda: torch.mm(m1, m2)), args.repeats,
                          args.warmup, device)
        achieved = flops / sec['enc'] / 1e9
        peak = 2 * n**3 / sec['mm'] / 1e9
        t.add(f'encoder fwd {name} achieved FLOP/s vs mm', achieved, peak, 'GFLOP/s', True, None,
              f'{100 * achieved / peak:.0f}% of a {n}x{n} torch.mm ({flops / 1e9:.3g} GFLOP/fwd, '
              f'{args.img_size}px b8)')


def rows_vitdet(t: Table, args, a: Dict, device: torch.device) -> None:
    from mmengine.registry import MODELS
    d = vit_arch(a)
    if args.arch == 'bench':  # keep the CPU table short: 1024 px global attention is heavy
        d = dict(embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768)
    depth = d['num_layers']
    windowed = [i for i in range(depth) if i % 3 != 2]  # ViTDet: every third block global

    def build(size, window, with_cp=False):
        torch.manual_seed(0)
        return MODELS.build(dict(type='ADDPViT', arch=d, img_size=size, with_cls_token=False,
                                 window_size=window, window_block_indexes=windowed,
                                 use_rel_pos=True, out_type='featmap', with_cp=with_cp)).to(device)

    for size in (512, 1024):
        win, glob, win_cp = build(size, 14), build(size, 0), build(size, 14, with_cp=True)
        glob.load_state_dict(win.state_dict())  # the pre-hook resizes the rel-pos tables
        win_cp.load_state_dict(win.state_dict())
        x = torch.randn(1, 3, size, size, device=device)

        def step(m):
            return lambda: m(x)[-1].sum().backward()

        sec = interleaved(dict(win=step(win), glob=step(glob)), max(1, args.repeats - 1),
                          1, device)
        dims = f"{d['embed_dims']}x{depth}, window 14 in blocks {windowed}, rel-pos, b1"
        t.add(f'vitdet fwd+bwd {size}px windows vs global', 1 / sec['win'], 1 / sec['glob'],
              'img/s', True, None, dims)
        mem_win = peak_memory(step(win), device)
        t.add(f'vitdet fwd+bwd {size}px peak memory', mem_win, peak_memory(step(glob), device),
              'MiB', False, None, 'windows vs global')
        t.add(f'vitdet fwd+bwd {size}px with_cp memory', peak_memory(step(win_cp), device),
              mem_win, 'MiB', False, None, 'windows with_cp=True vs False')


def _pretrain_setup(args, a: Dict, device: torch.device):
    from benchmark_release_path import release_tokenizer
    model = build_addp(a, args.img_size, device)
    ref_tok = release_tokenizer(model.target_generator.tokenizer)
    B = args.batch
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(B, 3, args.img_size, args.img_size, generator=g).to(device)
    N = (args.img_size // 16)**2
    mask_t, mask_next = model.target_generator.mask_schedule.sample(B, N, device=device)
    return model, ref_tok, imgs, mask_t, mask_next


def pretrain_modes(device: torch.device) -> Dict[str, Dict]:
    """The precision modes a config can choose (the frozen parts' mode + AMP of the trained
    parts): fp32, the frozen parts' ``'auto'`` without AMP (``'fast'``), the fastest = ``'auto'``
    with the device's AMP dtype (``'release'``: every part follows it, the VQ encoder included),
    and ``'fast'`` under the same AMP (the VQ encoder kept in fp32) for comparison."""
    amp = amp_precision(device)
    modes = {'fp32': dict(frozen='fp32', amp=None)}
    if frozen_precisions('auto', device) != frozen_precisions('fp32', device):
        modes['frozen auto (fast)'] = dict(frozen='auto', amp=None)
    if amp is not None:
        modes[f'fastest (frozen auto + AMP {amp}: release)'] = dict(frozen='auto', amp=amp)
        modes[f'fast + AMP {amp} (VQ encoder fp32)'] = dict(frozen='fast', amp=amp)
    return modes


def amp_precision(device: torch.device) -> Optional[str]:
    """The release's autocast dtype on ``device``: fp16 on CUDA (``torch.cuda.amp.autocast``),
    bf16 on a CPU that computes it natively; ``None`` where autocast would be emulated."""
    if device.type == 'cuda':
        return 'fp16'
    return 'bf16' if native_bf16(device) else None


def amp_autocast(device: torch.device, amp: Optional[str]):
    """Autocast to ``amp`` (``'bf16'`` / ``'fp16'``) on ``device``; ``None``: autocast off."""
    return precision_context(amp or 'fp32', device)


def rows_pretrain(t: Table, args, a: Dict, device: torch.device) -> None:
    from benchmark_release_path import release_loss, release_tokenizer
    model, ref_tok, imgs, mask_t, mask_next = _pretrain_setup(args, a, device)
    amp = amp_precision(device)
    # the release under its own autocast: every part follows it (its VQGAN and MAGE included)
    ref_tok_amp = release_tokenizer(model.target_generator.tokenizer, precision=None)
    autocast = partial(amp_autocast, device)

    def ours_step(mode):
        def run():
            set_frozen_precision(model, mode['frozen'])
            with autocast(mode['amp']):
                loss = model.loss(imgs, mask_t=mask_t, mask_next=mask_next)['loss']
            loss.backward()
            model.zero_grad(set_to_none=True)
            return loss.detach()
        return run

    def ref_step(dtype_name=None):
        def run():
            with autocast(dtype_name):
                loss = release_loss(model, ref_tok if dtype_name is None else ref_tok_amp, imgs,
                                    mask_t, mask_next,
                                    predictor_precision='fp32' if dtype_name is None else None)
            loss.backward()
            model.zero_grad(set_to_none=True)
            return loss.detach()
        return run

    def noised_pixels(mode):
        set_frozen_precision(model, mode['frozen'])
        with torch.no_grad(), autocast(mode['amp']):
            return model.target_generator(imgs, mask_t, mask_next)['x_t'].float()

    modes = pretrain_modes(device)
    x_t = {k: noised_pixels(m) for k, m in modes.items()}  # what the fast modes change
    refs = {'release': ref_step()}
    if amp is not None:
        refs[f'release AMP {amp}'] = ref_step(amp)
    fns = {**refs, **{k: ours_step(m) for k, m in modes.items()}}
    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.backbone.compile()
        compiled.neck.compile()

        def compiled_step():
            set_frozen_precision(compiled, 'fp32')
            loss = compiled.loss(imgs, mask_t=mask_t, mask_next=mask_next)['loss']
            loss.backward()
            compiled.zero_grad(set_to_none=True)
            return loss.detach()
        t0 = time.perf_counter()
        compiled_step()
        print(f'torch.compile of encoder + decoder: first step {time.perf_counter() - t0:.1f} s',
              file=sys.stderr)
        fns['fp32 + torch.compile'] = compiled_step
    losses = {k: float(fn()) for k, fn in fns.items()}  # also the first warm-up run
    sec = interleaved(fns, args.repeats, max(0, args.warmup - 1), device)
    mem_ref = peak_memory(refs['release'], device)
    B = args.batch
    for k in fns:
        if k in refs:
            continue
        rel = abs(losses[k] - losses['fp32']) / abs(losses['fp32'])
        note = f'loss {losses[k]:.5f} (release {losses["release"]:.5f}); rel. diff to fp32 {rel:.1e}'
        if k in x_t:
            pixels = float((x_t[k] - x_t['fp32']).abs().mean() / x_t['fp32'].abs().mean())
            note += f'; x_t mean abs diff to fp32 {pixels:.1e} of its mean magnitude'
        target = {'fp32': '>=1.5'}.get(k, '>=3' if k.startswith('fastest') else None)
        t.add(f'pretrain step {k}', B / sec[k], B / sec['release'], 'img/s', True, target, note)
        t.add(f'pretrain step {k} peak memory', peak_memory(fns[k], device), mem_ref, 'MiB',
              False)
    # like with like: the release under its own autocast against ours under the same autocast
    if amp is not None:
        ref_amp = f'release AMP {amp}'
        for k in modes:
            if modes[k]['amp'] is None:
                continue
            rel = abs(losses[k] - losses['fp32']) / abs(losses['fp32'])
            t.add(f'pretrain step {k} vs {ref_amp}', B / sec[k], B / sec[ref_amp], 'img/s', True,
                  '>=1.5' if k.startswith('fastest') else None,
                  f'loss {losses[k]:.5f} ({ref_amp} {losses[ref_amp]:.5f}); rel. diff to fp32 '
                  f'{rel:.1e}')
    if device.type == 'cuda':
        t.add('pretrain step host synchronisations', count_syncs(fns['fp32']),
              count_syncs(refs['release']), 'syncs', False, '0',
              'torch.cuda.set_sync_debug_mode warnings in one step (fewer is better)')
    set_frozen_precision(model, 'fp32')


def count_syncs(fn: Callable[[], object]) -> float:
    """Host synchronisations in one call, as counted by CUDA's sync debug mode."""
    import warnings
    torch.cuda.set_sync_debug_mode('warn')
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            fn()
    finally:
        torch.cuda.set_sync_debug_mode('default')
    return float(sum('synchroniz' in str(w.message) for w in caught))


def rows_parts(t: Table, args, a: Dict, device: torch.device) -> None:
    """Where the step's time goes, piece by piece, ours vs release-style: in fp32, and (where the
    device has an AMP dtype) ours in the fastest mode vs the release under its own autocast; the
    optimizer's AdamW step (the same code on both sides) for scale."""
    from benchmark_release_path import (release_full_logits, release_predict, release_style,
                                        release_tokenizer)

    from addp_mm.models.utils.masking import masked_positions
    model, ref_tok, imgs, mask_t, mask_next = _pretrain_setup(args, a, device)
    tok, pred = model.target_generator.tokenizer, model.target_generator.token_predictor
    set_frozen_precision(model, 'fp32')
    with torch.no_grad():
        state = model.target_generator(imgs, mask_t, mask_next)
        idx0 = state['indices']
    N = mask_t.shape[1]
    positions = masked_positions(mask_t, int(mask_t[0].sum()))

    def under(amp, fn, release=False, grad=False):
        def run():
            with amp_autocast(device, amp), \
                    (release_style(model, predictor_precision='fp32' if amp is None else None)
                     if release else nullcontext()), \
                    (nullcontext() if grad else torch.no_grad()):
                return fn()
        return run

    def fwd_bwd(release):
        def run():  # ours scores only the masked grid positions, the release every position
            enc = model.encode(state['x_t'])
            if release:
                full = release_full_logits(model, enc, state['indices'], mask_t)
                logits = full[:, 1:1 + N].gather(
                    1, positions.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
            else:
                logits = model.neck(enc, state['indices'], mask_t, positions=positions)
            model.head(logits, state['target'], positions).backward()
            model.zero_grad(set_to_none=True)
        return run

    settings = [('fp32', None, 'fp32', ref_tok)]
    amp = amp_precision(device)
    if amp is not None:
        # 'auto' under autocast is 'release': every part follows the AMP dtype
        settings.append((f'fastest vs release AMP {amp}', amp, 'release',
                         release_tokenizer(tok, precision=None)))
    for label, amp_name, mode, rtok in settings:
        prec = frozen_precisions(mode, device)
        parts = [
            ('VQ encode', lambda: tok.encode(imgs, prec.encode), lambda: rtok.encode(imgs)),
            ('token predictor (2 masks)',
             lambda: pred.predict(idx0, [mask_t, mask_next], prec.predictor),
             lambda: (release_predict(pred, idx0, mask_t), release_predict(pred, idx0, mask_next))),
            ('VQ decode', lambda: tok.decode(state['z_t'], prec.decode),
             lambda: rtok.decode(state['z_t'])),
        ]
        fns = {}
        for name, ours, ref in parts:
            fns[name] = (under(amp_name, ours), under(amp_name, ref, release=True))
        fns['encoder+decoder fwd+bwd'] = (under(amp_name, fwd_bwd(False), grad=True),
                                          under(amp_name, fwd_bwd(True), release=True, grad=True))
        for name, (ours, ref) in fns.items():
            sec = interleaved(dict(ours=ours, ref=ref), args.repeats, args.warmup, device)
            t.add(f'step part ({label}): {name}', sec['ours'], sec['ref'], 's', False)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer = torch.optim.AdamW(params, lr=1e-6)
    sec = interleaved(dict(ours=optimizer.step, ref=optimizer.step), args.repeats, args.warmup,
                      device)
    t.add('step part: optimizer (AdamW, the same code)', sec['ours'], sec['ref'], 's', False)
    model.zero_grad(set_to_none=True)


def rows_generation(t: Table, args, a: Dict, device: torch.device) -> None:
    from benchmark_release_path import release_generate, release_tokenizer
    from addp_mm.models.generation import ADDPSampler
    model = build_addp(a, args.img_size, device)
    model.target_generator.token_predictor = None
    model.eval()
    ref_tok = release_tokenizer(model.target_generator.tokenizer)
    sampler = ADDPSampler(num_steps=args.steps)
    B = args.gen_batch
    out = {}

    def ours(mode):
        # the frozen VQ decoder in ``mode``; the encoder / decoder ViTs stay fp32 (autocast of
        # small batches costs a weight cast per layer and call: measured slower than fp32 here)
        def run():
            model.target_generator.tokenizer.precision = mode
            out[mode] = sampler.sample(model, B, seed=0)
        return run

    def ref():
        out['release'] = release_generate(model, ref_tok, sampler, B, seed=0)

    fns = {'release': ref, 'fp32': ours('fp32')}
    auto = resolve_precision('auto', device)
    if auto != 'fp32':
        fns[f'auto (VQ decoder {auto})'] = ours('auto')
    sec = interleaved(fns, max(1, args.repeats - 1), 1, device)
    for k in fns:
        if k == 'release':
            continue
        key = 'fp32' if k == 'fp32' else 'auto'
        diff = float((out[key] - out['release']).abs().max())
        t.add(f'generation {args.steps} steps {k}', B / sec[k], B / sec['release'], 'img/s', True,
              '>=1.5' if k == 'fp32' else None,
              f'b{B}, {args.img_size}px; max abs image diff to release {diff:.1e}')
    model.target_generator.tokenizer.precision = 'fp32'


ONNX_CONFIGS = {
    'demo': ['configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py',
             'configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py',
             'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'],
    'base': ['configs/imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py',
             'configs/ade20k/upernet_vit-base-p16_addp-pre_8xb2-160k_ade20k-512x512.py'],
}


def _onnx_row(t: Table, args, name: str, module, x: torch.Tensor, target, note: str) -> None:
    """Export ``module`` on ``x`` to ONNX, then ONNX Runtime vs eager PyTorch, interleaved."""
    import tempfile

    from addp_mm.apis.export import eager_outputs, export_onnx, onnx_runner
    with tempfile.TemporaryDirectory() as tmp:
        file = osp.join(tmp, 'model.onnx')
        export_onnx(module, x, file)
        run = onnx_runner(file)
        ref, _ = eager_outputs(module, x, 1)
        rel = max(float((r - g).abs().max()) / float(r.abs().max()) for r, g in zip(ref, run(x)))

        def eager():
            with torch.no_grad():
                module(x)
        sec = interleaved(dict(ours=lambda: run(x), ref=eager), args.repeats, args.warmup,
                          torch.device('cpu'))
    t.add(name, sec['ours'] * 1000, sec['ref'] * 1000, 'ms', False, target,
          f'{note}; max rel diff {rel:.1e}')


def rows_onnx(t: Table, args, a: Dict, device: torch.device) -> None:
    from addp_mm.apis.export import TASKS, WRAPPERS, build_model
    if device.type != 'cpu':
        raise UsageError('--rows onnx measures ONNX Runtime on the CPU: use --device cpu')
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for size in ['demo'] + (['base'] if args.onnx_base else []):
        for config in ONNX_CONFIGS[size]:
            torch.manual_seed(0)
            model, cfg = build_model(osp.join(root, config), None)
            h, w = model.backbone.img_size
            what = TASKS[cfg.default_scope].replace(' + ', '+')
            _onnx_row(t, args, f'onnxruntime {what} {size} {h}px b1',
                      WRAPPERS[cfg.default_scope](model).eval(), torch.randn(1, 3, h, w),
                      '>=1.1' if size == 'base' and what == 'classifier' else None,
                      f'vs eager PyTorch; {osp.basename(config)}')
    if args.onnx_base:  # calibration: timm's stock ViT-B/16 at 256 px, exported the same way
        import timm
        torch.manual_seed(0)
        vit = timm.create_model('vit_base_patch16_224', img_size=256, num_classes=1000).eval()
        _onnx_row(t, args, 'onnxruntime timm vit_base_patch16 256px b1 (calibration)', vit,
                  torch.randn(1, 3, 256, 256), None, 'a stock timm ViT-B/16 exported the same way')


GROUP_FNS = dict(vit=rows_vit, flops=rows_flops, vitdet=rows_vitdet, pretrain=rows_pretrain,
                 parts=rows_parts, generation=rows_generation, onnx=rows_onnx)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_device(args)
    global _timer
    _timer = TIMERS[args.timer]

    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel('WARNING')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    a = ARCHS[args.arch]
    cap = torch.backends.cpu.get_cpu_capability() if device.type == 'cpu' else \
        torch.cuda.get_device_name(device)
    setting = (f'device {device} ({cap}; native bf16: {native_bf16(device)}; "auto" -> '
               f'{resolve_precision("auto", device)}), {torch.get_num_threads()} threads, torch '
               f'{torch.__version__}, arch {args.arch}, repeats {args.repeats} (median), warm-up '
               f'{args.warmup}, timer {args.timer}')
    print(f'# {setting}', file=sys.stderr)
    table = Table()
    start = time.perf_counter()
    for group in args.rows:
        t0 = time.perf_counter()
        GROUP_FNS[group](table, args, a, device)
        print(f'# {group}: {time.perf_counter() - t0:.0f} s wall', file=sys.stderr, flush=True)
    print(f'# all rows: {time.perf_counter() - start:.0f} s wall', file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(table.rows, indent=1))
    else:
        print(table.format())
    if args.markdown:
        write_markdown(args.markdown, table.rows, setting, time.perf_counter() - start,
                       argv if argv is not None else sys.argv[1:])
    return 0


def machine() -> str:
    """The CPU model and core count (Linux), else the platform."""
    import platform
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        if names:
            model = f'{names[0]}, {len(names)} logical cores'
    except OSError:
        pass
    return model


def write_markdown(path: str, rows, setting: str, seconds: float, argv) -> None:
    """The table as a Markdown page: how it was made, on what, then one line per row."""
    import datetime
    import shlex
    lines = [
        '# Benchmark table', '',
        'Written by `python tools/benchmark.py ' + ' '.join(shlex.quote(a) for a in argv) + '` '
        f'on {datetime.date.today().isoformat()} ({seconds:.0f} s wall); do not edit by hand.', '',
        f'Machine: {machine()}; {setting}.', '',
        '"ratio" is how many times better ours is (throughput ours / reference; time and memory '
        'reference / ours). What each row compares: `tools/benchmark.py --help` and '
        '[../advanced_guides/performance.md](../advanced_guides/performance.md).', '',
        '| row | ours | reference | unit | ratio | target | note |',
        '|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['ours']:.4g} | {r['reference']:.4g} | {r['unit']} | "
                     f"{r['ratio']:.2f}x | {r['target'] or '-'} | {r.get('note', '')} |")
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    run_tool(main)
