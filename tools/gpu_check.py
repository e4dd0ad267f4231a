"""Validate a GPU machine for addp-mm in one command: one report, JSON + Markdown.

    python tools/gpu_check.py [--out-dir work_dirs/gpu_check] [--arch base] [--reference DIR]
    python tools/gpu_check.py --cpu      # the pure-PyTorch parts on the CPU at demo size

With CUDA it runs, in about 10 minutes on one GPU (each part says why when it is skipped):

1. ``reference``: every ``tools/verify_reference.py`` row (the released implementation's outputs)
   with its error. The rows are recomputed on the CPU (``tools/verification`` has no device
   option); the report says so.
2. ``pretrain``: one pretraining step at ``--arch`` in fp32 and in the fastest mode (the frozen
   parts' ``'auto'``, on CUDA the release's own precision: fp16 autocast over every part, the VQ
   encoder included): the loss against fp32 and images/s side by side with the release-style path
   in fp32 and under its own fp16 autocast (``tools/benchmark.py --device cuda --rows
   pretrain``), TF32 off.
3. ``generation``: 20 steps: images against fp32 and images/s against the release-style sampler
   (``--rows generation``).
4. ``ddp``: two processes (NCCL where two GPUs exist, else skipped; ``--cpu``: gloo) train the
   same step as one process and must end with the same weights.
5. ``detector``: the demo Mask R-CNN for one epoch where mmcv has its CUDA ops; else a note on
   how to build them.

Without CUDA (and without ``--cpu``) it prints what it would run and exits 0.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import ROOT, add_debug_flag, before_heavy_imports, run_tool  # noqa: E402

PARTS = {
    'reference': 'every verify_reference row (the released implementation\'s outputs) with its error',
    'pretrain': 'a pretraining step in fp32 and the fastest mode (fp16 AMP over all): loss vs '
                'fp32, img/s vs the release-style path in fp32 and under its fp16 autocast',
    'generation': 'generation (20 steps): images vs fp32, img/s vs the release-style sampler',
    'ddp': 'two processes (NCCL) train one step as one process does: same weights',
    'detector': 'the demo Mask R-CNN for one epoch (needs mmcv\'s CUDA ops)',
}
BUILD_OPS = 'REBUILD_MMCV=1 FORCE_CUDA=1 bash tools/install.sh'
DEFAULT_REFERENCE = osp.join(ROOT, '..', 'shared', 'reference')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Validate a GPU machine (addp-mm)')
    p.add_argument('--out-dir', default='work_dirs/gpu_check', help='where gpu_check.json / .md go')
    p.add_argument('--arch', default=None, choices=('demo', 'bench', 'base', 'large'),
                   help='model size of the pretrain / generation parts (default: base on CUDA, '
                        'demo with --cpu)')
    p.add_argument('--reference', default=os.environ.get('ADDP_REFERENCE_DIR', DEFAULT_REFERENCE),
                   help='reference folder for the reference rows (default: $ADDP_REFERENCE_DIR or '
                        '../shared/reference)')
    p.add_argument('--parts', nargs='+', choices=list(PARTS), default=list(PARTS))
    p.add_argument('--cpu', action='store_true',
                   help='run the pure-PyTorch parts on the CPU at demo size (a dry run of the report)')
    p.add_argument('--ddp-worker', nargs=2, metavar=('BACKEND', 'OUT'), help=argparse.SUPPRESS)
    add_debug_flag(p)
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------- parts
def part_reference(args, device) -> Dict:
    if not osp.isdir(args.reference):
        return dict(status='skipped', reason=f'no reference folder {args.reference} (--reference DIR)')
    from verification import run_checks
    import importlib.util
    rows = run_checks(args.reference, num_threads=None)
    # the fine-tuning classifier's rows build mmpretrain's ImageClassifier: on a machine without
    # mmpretrain they are skipped, not failed
    no_mmpretrain = importlib.util.find_spec('mmpretrain') is None
    skipped = [r.key for r in rows if not r.passed and no_mmpretrain and 'mmpretrain' in r.note]
    failed = [r.key for r in rows if not r.passed and r.key not in skipped]
    reason = 'recomputed on the CPU (tools/verification has no device option)'
    if skipped:
        reason += f'; {", ".join(skipped)} skipped: they need mmpretrain'
    return dict(status='failed' if failed else 'passed', reason=reason,
                rows=[dict(name=r.key, value=r.max_abs_err,
                           passed=None if r.key in skipped else r.passed, note=r.note)
                      for r in rows], failed=failed)


def _benchmark_rows(group: str, args, device) -> List[Dict]:
    import torch

    import benchmark
    argv = ['--device', str(device), '--arch', args.arch]
    if device.type == 'cpu':  # a check of the script itself: one timing, no warm-up
        argv += ['--img-size', '64', '--batch', '2', '--steps', '2', '--repeats', '1', '--warmup', '0']
    else:
        argv += ['--repeats', '3', '--warmup', '1']
    bargs = benchmark.parse_args(argv)
    table = benchmark.Table()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    benchmark.GROUP_FNS[group](table, bargs, benchmark.ARCHS[args.arch], device)
    return [dict(name=r['name'], value=r['ratio'], ours=r['ours'], reference=r['reference'],
                 unit=r['unit'],
                 note=f"ratio of ours {r['ours']} vs release-style {r['reference']} {r['unit']}"
                      + (f"; {r['note']}" if r.get('note') else '')) for r in table.rows]


def _loss_agreement(rows: List[Dict]) -> List[str]:
    """Pretraining rows whose loss moved more than 1e-2 (relative) from fp32."""
    import re
    bad = []
    for r in rows:
        found = re.search(r'rel\. diff to fp32 ([0-9.e+-]+)', r['note'])
        if found and float(found.group(1)) >= 1e-2:
            bad.append(r['name'])
    return bad


def part_pretrain(args, device) -> Dict:
    rows = _benchmark_rows('pretrain', args, device)
    bad = _loss_agreement(rows)
    return dict(status='failed' if bad else 'passed', rows=rows, failed=bad)


def part_generation(args, device) -> Dict:
    import re
    rows = _benchmark_rows('generation', args, device)
    bad = []
    for r in rows:
        found = re.search(r'max abs image diff to release ([0-9.e+-]+)', r['note'])
        if found and 'fp32' in r['name'] and float(found.group(1)) >= 1e-3:
            bad.append(r['name'])
    return dict(status='failed' if bad else 'passed', rows=rows, failed=bad)


def ddp_worker(backend: str, out: str) -> None:
    """One rank of the ``ddp`` part: a DDP step of a demo encoder; rank 0 saves the weights."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from addp_mm.engine.runner_factory import close_process_group
    from addp_mm.models.backbones import ADDPViT
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device('cuda', rank) if backend == 'nccl' else torch.device('cpu')
    torch.manual_seed(0)
    model = ADDPViT(arch='demo', img_size=64, out_type='avg_featmap').to(device)
    ddp = DistributedDataParallel(model, device_ids=[rank] if device.type == 'cuda' else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x = torch.randn(2 * world, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(device)
    ddp(x[2 * rank:2 * rank + 2])[0].pow(2).mean().backward()
    opt.step()
    if rank == 0:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out)
    dist.barrier()
    del ddp  # it holds the process group
    close_process_group()


def part_ddp(args, device) -> Dict:
    import torch

    from addp_mm.models.backbones import ADDPViT
    if device.type == 'cuda' and torch.cuda.device_count() < 2:
        return dict(status='skipped', reason=f'{torch.cuda.device_count()} GPU: needs two')
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'rank0.pth')
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
               '--master_port', str(_free_port()), osp.abspath(__file__), '--ddp-worker', backend, out]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return dict(status='failed', reason=f'torchrun exited {proc.returncode}: '
                        f'{proc.stderr.strip().splitlines()[-1:]}')
        ddp_state = torch.load(out, weights_only=True)
    # one process, the whole batch: the gradient is the mean over both halves, as DDP averages
    torch.manual_seed(0)
    model = ADDPViT(arch='demo', img_size=64, out_type='avg_featmap')
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    loss = (model(x[:2])[0].pow(2).mean() + model(x[2:])[0].pow(2).mean()) / 2
    loss.backward()
    opt.step()
    diff = max(float((v - ddp_state[k]).abs().max()) for k, v in model.state_dict().items())
    ok = diff < 1e-5
    return dict(status='passed' if ok else 'failed', reason=f'backend {backend}, 2 processes',
                rows=[dict(name='max abs weight diff, DDP vs one process', value=diff, passed=ok)])


def part_detector(args, device) -> Dict:
    if device.type != 'cuda':
        return dict(status='skipped', reason='CPU run: the detector epoch runs on CUDA only')
    try:
        import torch
        from mmcv.ops import roi_align
        feats = torch.zeros(1, 1, 8, 8, device=device)
        roi_align(feats, torch.tensor([[0., 0., 0., 4., 4.]], device=device), (2, 2))
    except Exception as e:  # mmcv-lite, or mmcv built without CUDA ops
        return dict(status='skipped', reason=f'mmcv has no CUDA ops here ({type(e).__name__}); '
                    f'build them: {BUILD_OPS}')
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=ROOT)
        steps = [[sys.executable, osp.join(ROOT, 'tools', 'make_demo_data.py'), 'data/demo',
                  '--only', 'coco'],
                 [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                  osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'),
                  '--work-dir', 'work', '--cfg-options', 'train_cfg.max_epochs=1']]
        for cmd in steps:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                return dict(status='failed', reason=f'{osp.basename(cmd[1])} exited '
                            f'{proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}')
    return dict(status='passed', reason='one epoch trained and evaluated on CUDA')


PART_FNS = dict(reference=part_reference, pretrain=part_pretrain, generation=part_generation,
                ddp=part_ddp, detector=part_detector)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------- report
def machine(device) -> Dict:
    import torch
    info = dict(python=platform.python_version(), torch=torch.__version__, device=str(device),
                cuda=torch.version.cuda, gpus=torch.cuda.device_count())
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    for name in ('mmengine', 'mmcv', 'timm'):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    return info


def write_report(report: Dict, out_dir: str) -> List[str]:
    os.makedirs(out_dir, exist_ok=True)
    json_file, md_file = osp.join(out_dir, 'gpu_check.json'), osp.join(out_dir, 'gpu_check.md')
    with open(json_file, 'w') as f:
        json.dump(report, f, indent=1)
    lines = ['# addp-mm GPU check', '',
             'Written by `python tools/gpu_check.py' + (' --cpu' if report['cpu'] else '') + '`; '
             'do not edit by hand.', '',
             'Machine: ' + ', '.join(f'{k} {v}' for k, v in report['machine'].items()), '',
             '| part | status | seconds | note |', '|---|---|---|---|']
    for name, part in report['parts'].items():
        lines.append(f"| {name} | {part['status']} | {part.get('seconds', 0):.0f} | "
                     f"{part.get('reason', '')} |")
    for name, part in report['parts'].items():
        if part.get('rows'):
            lines += ['', f'## {name}', '', '| row | value | note |', '|---|---|---|']
            for r in part['rows']:
                value = r['value'] if isinstance(r['value'], str) or r['value'] is None \
                    else f"{r['value']:.4g}"
                lines.append(f"| {r['name']} | {value} | {r.get('note', '')} |")
    with open(md_file, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return [json_file, md_file]


def main(argv=None) -> int:
    args = parse_args(argv)
    before_heavy_imports(threads=False)
    sys.path.insert(0, ROOT)  # run from a checkout
    if args.ddp_worker:
        ddp_worker(*args.ddp_worker)
        return 0
    import torch
    if not torch.cuda.is_available() and not args.cpu:
        print('gpu_check: no CUDA device here, nothing run. On a GPU machine it runs:')
        for name in args.parts:
            print(f'  {name:<11} {PARTS[name]}')
        print(f'and writes {args.out_dir}/gpu_check.json and gpu_check.md. '
              '`--cpu` runs the pure-PyTorch parts here at demo size.')
        return 0
    import addp_mm  # noqa: F401
    device = torch.device('cpu' if args.cpu else 'cuda')
    args.arch = args.arch or ('demo' if args.cpu else 'base')
    report = dict(cpu=args.cpu, arch=args.arch, machine=machine(device), parts={})
    for name in args.parts:
        start = time.perf_counter()
        try:
            part = PART_FNS[name](args, device)
        except Exception as e:  # a part's failure is reported, the others still run
            part = dict(status='failed', reason=f'{type(e).__name__}: {e}'.splitlines()[0][:300])
        part['seconds'] = time.perf_counter() - start
        report['parts'][name] = part
        print(f"gpu_check: {name}: {part['status']} ({part['seconds']:.0f} s) {part.get('reason', '')}",
              flush=True)
    files = write_report(report, args.out_dir)
    print('gpu_check: report ' + ' '.join(files))
    failed = [n for n, p in report['parts'].items() if p['status'] == 'failed']
    return 1 if failed else 0


if __name__ == '__main__':
    run_tool(main)
