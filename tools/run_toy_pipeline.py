"""Train every part on your own images: the toy ADDP chain on scikit-learn's handwritten digits.

    python tools/run_toy_pipeline.py [--quick] [--work-dir work_dirs/toy_pipeline]
        [--data-root data/demo/digits] [--device cpu|cuda] [--seeds 0 1 2]
        [--tokenizer-iters N] [--predictor-iters N] [--addp-iters N] [--batch-size B]
        [--tokenizer-ch C] [--codebook-size K] [--predictor-width W] [--predictor-depth D]
        [--num-samples N] [--gen-steps S] [--skip-downstream] [--edits] [--edit-digits N] [--reuse]

Steps, one after the other in this process (torch and the OpenMMLab stack are imported once, step
0); each training step and the generation is a ``tools/train.py`` / ``tools/generate.py`` run by
its ``main``, its output in ``WORK_DIR/logs/``, reading the previous step's output file (passed
with ``--cfg-options`` of the config's top-level variable and of the key that uses it):

    1 tokenizer   configs/toy/vq-autoencoder_vqgan-toy_1xb32-1k_digits-32px.py
                  -> tokenizer/tokenizer.pth
    2 predictor   configs/toy/mage-token-trainer_mage-toy_1xb32-2k_digits-32px.py
                  -> predictor/token_predictor.pth
    3 addp        configs/toy/addp_vit-demo-p4_1xb32-2k_digits-32px.py
                  -> addp/iter_N.pth, addp/backbone.pth
    4 generate    tools/generate.py -> samples/*.png, samples_grid.png
    5-7 evaluation  tokenizer (val MSE / PSNR, codebook usage, reconstruction grid), token
                  predictor (masked-token accuracy on val at mask ratio 0.5), ADDP loss curve, toy
                  FID (samples, reconstructions = floor, random-token decodes = ceiling, in the
                  features of a digit classifier trained here), downstream linear probe and
                  10%-label fine-tune, ADDP-pretrained vs random init, over ``--seeds``
                  (tools/toy_metrics.py)
    8 edits       with ``--edits``: the val digits' lower half and centre box inpainted with
                  ``--gen-steps`` steps, sampler seeds ``--seeds``, against their VQ
                  reconstructions, grey / black fills and unconditional samples in the digit
                  classifier's eyes; the known tokens and pixels; variations at 3 ratios
                  (tools/toy_metrics.py:edit_metrics); the encoder, decoder and tokenizer in one
                  small file, edits/generation.pth (tests/assets/toy_chain)

Writes ``WORK_DIR/results.md`` and ``WORK_DIR/results.json`` and prints the table with each step's
wall and CPU time. A value the run cannot measure is null in results.json, its reason in
``not_measured`` (the table: ``n/a (reason)``). ``--quick``: 60 / 200 / 12 iterations at batch 16,
8 samples (too few for a toy FID: n/a), a digit classifier of 3 epochs, a one-epoch linear probe,
a fine-tune of 2 iterations on 8 images (the handoff only: n/a), one seed, no random-init
baselines (n/a), edits of 32 val digits: every file handoff and the directions a working chain
shows (CI). ``--reuse`` skips what an earlier run in WORK_DIR already wrote (training steps,
generation, the digit classifier, each downstream run). The data is written first when
``--data-root`` does not exist (tools/make_demo_data.py).
"""
import argparse
import contextlib
import glob
import importlib
import json
import math
import os
import os.path as osp
import shutil
import sys
import time
import traceback

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import (  # noqa: E402
    ROOT, UsageError, add_debug_flag, before_heavy_imports, is_user_mistake, run_tool)

CONFIGS = {part: osp.join(ROOT, 'configs', 'toy', name) for part, name in dict(
    tokenizer='vq-autoencoder_vqgan-toy_1xb32-1k_digits-32px.py',
    predictor='mage-token-trainer_mage-toy_1xb32-2k_digits-32px.py',
    addp='addp_vit-demo-p4_1xb32-2k_digits-32px.py',
).items()}
# ~24 min on 2 quiet CPU cores (docs/user_guides/train_every_part.md); 200 iterations each run
# in ~8 min but are too short for pretraining to help the 10%-label fine-tune
FULL = dict(tokenizer_iters=1000, predictor_iters=2000, addp_iters=2000, num_samples=200,
            gen_steps=8, seeds=[0, 1, 2], edit_digits=None)
# about 40 s of CPU time (one thread), the imports included: the directions a working chain
# shows (tests/test_toy_pipeline.py): the tokenizer beats the mean image, the predictor the most
# frequent code, every loss goes down, reconstructions' toy FID far below random tokens', the
# linear probe above chance. 60 tokenizer iterations: its dead codes are restarted at 50 (with
# 40, one code held 20 % of the val tokens and the predictor learned little more than that code)
QUICK = dict(tokenizer_iters=60, predictor_iters=200, addp_iters=12, batch_size=16,
             num_samples=8, gen_steps=2, seeds=[0], edit_digits=32)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train every part of ADDP on the digits and measure '
                                'what pretraining buys (docs/user_guides/train_every_part.md)')
    p.add_argument('--work-dir', default='work_dirs/toy_pipeline')
    p.add_argument('--data-root', default='data/demo/digits',
                   help='digits image folders (written by tools/make_demo_data.py if missing)')
    p.add_argument('--quick', action='store_true',
                   help='60 / 200 / 12 iterations at batch 16, one seed, no random-init '
                        'baselines (CI)')
    p.add_argument('--device', choices=['cpu', 'cuda'],
                   help='default: cuda when available (the training tools\' default), else cpu')
    p.add_argument('--seeds', type=int, nargs='+',
                   help='downstream seeds and the edits\' sampler seeds (default 0 1 2; quick: 0)')
    p.add_argument('--tokenizer-iters', type=int, help=f'default {FULL["tokenizer_iters"]}')
    p.add_argument('--predictor-iters', type=int, help=f'default {FULL["predictor_iters"]}')
    p.add_argument('--addp-iters', type=int, help=f'default {FULL["addp_iters"]}')
    p.add_argument('--batch-size', type=int,
                   help='batch of the three training steps (configs: 32; quick: 16)')
    p.add_argument('--tokenizer-ch', type=int, default=32,
                   help='tokenizer base width (a multiple of 32; MAGE: 128)')
    p.add_argument('--codebook-size', type=int, default=128, help='codes (MAGE: 1024)')
    p.add_argument('--predictor-width', type=int, default=64,
                   help='token predictor width (MAGE ViT-B: 768)')
    p.add_argument('--predictor-depth', type=int, default=2,
                   help='token predictor encoder blocks (MAGE ViT-B: 12)')
    p.add_argument('--no-restart', action='store_true', help='tokenizer without dead-code restart')
    p.add_argument('--num-samples', type=int,
                   help=f'generated images (default {FULL["num_samples"]})')
    p.add_argument('--gen-steps', type=int, help=f'generation steps (default {FULL["gen_steps"]})')
    p.add_argument('--skip-downstream', action='store_true', help='no linear probe / fine-tune')
    p.add_argument('--edits', action='store_true',
                   help='also inpaint and vary the val digits and measure the edits (step 8, '
                        'docs/user_guides/generate_and_edit.md)')
    p.add_argument('--edit-digits', type=int, metavar='N',
                   help='with --edits: N of the val digits, spread over the classes (default all; quick: 32)')
    p.add_argument('--reuse', action='store_true',
                   help='skip a training step whose output file is already in WORK_DIR (e.g. '
                        'to rerun the evaluation after a change)')
    add_debug_flag(p)
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tokenizer_ch % 32:
        p.error(f'--tokenizer-ch {args.tokenizer_ch}: must be a multiple of 32 (GroupNorm(32))')
    return args


class Pipeline:

    def __init__(self, args):
        self.args = args
        self.work_dir = args.work_dir
        self.t0, self.cpu0 = time.time(), cpu_seconds()
        self.times = {}
        self.cpu_times = {}
        self.reused_s = 0.  # recorded time of the steps reused from an earlier run
        self.results = {}
        self.not_measured = {}  # results.json path -> why its value is null

    # ------------------------------------------------------------------ plumbing
    def path(self, *parts) -> str:
        return osp.join(self.work_dir, *parts)

    def log(self, msg: str) -> None:
        m, s = divmod(int(time.time() - self.t0), 60)
        print(f'[toy {m:3d}:{s:02d}] {msg}', flush=True)

    def recorded_times(self) -> dict:
        path = self.path('step_times.json')
        if not osp.isfile(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def record_time(self, name: str, seconds: float) -> None:
        times = self.recorded_times()
        times[name] = round(seconds, 1)
        with open(self.path('step_times.json'), 'w') as f:
            json.dump(times, f, indent=1)

    def step(self, name: str, fn, *a, reuse=None):
        if reuse is not None and self.args.reuse and all(osp.isfile(f) for f in reuse):
            earlier = self.recorded_times().get(name)
            self.log(f'{name}: reusing {", ".join(reuse)} (took {earlier} s)')
            self.times[name] = f'{earlier:.0f} (earlier run, reused)' if earlier else 'reused'
            self.reused_s += earlier or 0.
            return reuse[0] if len(reuse) == 1 else tuple(reuse)
        self.log(f'{name} ...')
        t, cpu = time.time(), cpu_seconds()
        out = fn(*a)
        self.times[name] = round(time.time() - t, 1)
        self.cpu_times[name] = round(cpu_seconds() - cpu, 1)
        self.record_time(name, self.times[name])
        self.log(f'{name} done in {self.times[name]:.0f} s ({self.cpu_times[name]:.0f} s of CPU)')
        return out

    def run(self, name: str, argv, log_file=None):
        """``tools/TOOL.py ARGS...`` (``argv``) run by its ``main`` in this process, one step after
        the other (torch and the OpenMMLab stack are imported once); what it prints goes to
        ``log_file`` (default ``WORK_DIR/logs/NAME.log``), its tail into the error if it fails."""
        log_file = log_file or self.path('logs', f'{name}.log')
        os.makedirs(osp.dirname(log_file), exist_ok=True)
        tool = importlib.import_module(osp.splitext(osp.basename(argv[0]))[0])  # tools/ on sys.path
        with open(log_file, 'w') as f, output_to(f):
            try:
                tool.main(argv[1:])
                failed = None
            except Exception as e:  # noqa: B902 (reported with the log below)
                traceback.print_exc(file=f)
                failed = e
        if failed is not None and is_user_mistake(failed):  # one line, as the tool says it
            raise UsageError(f'step {name}: {" ".join(str(failed).split())} '
                             f'(log {log_file})') from failed
        if failed is not None:
            with open(log_file) as f:
                tail = ''.join(f.readlines()[-30:])
            raise RuntimeError(f'step {name} failed ({type(failed).__name__}); '
                               f'log {log_file}:\n{tail}') from failed

    def require(self, path: str, what: str) -> str:
        if not osp.isfile(path):
            raise RuntimeError(f'{what}: {path} was not written')
        return path

    # ------------------------------------------------------------------ sizes
    def tokenizer_options(self, prefix: str):
        a = self.args
        return [f'{prefix}.ch={a.tokenizer_ch}', f'{prefix}.n_embed={a.codebook_size}']

    def predictor_options(self, prefix: str):
        a = self.args
        heads = max(1, a.predictor_width // 16)
        return [f'{prefix}.embed_dim={a.predictor_width}', f'{prefix}.depth={a.predictor_depth}',
                f'{prefix}.num_heads={heads}', f'{prefix}.decoder_embed_dim={a.predictor_width}',
                f'{prefix}.decoder_num_heads={heads}']

    def data_options(self):
        # a path variable: tools/train.py carries it into every key built from it
        return [f'data_root={self.args.data_root}']

    # ------------------------------------------------------------------ steps 1-4
    def train_tokenizer(self):
        wd = self.path('tokenizer')
        opts = (self.data_options()
                + schedule_options(self.args.tokenizer_iters, batch_size=self.args.batch_size)
                + self.tokenizer_options('model.tokenizer'))
        if self.args.no_restart:
            opts.append('model.restart_dead_codes=False')
        self.run('1_tokenizer', ['tools/train.py', CONFIGS['tokenizer'], '--work-dir', wd,
                                 '--cfg-options'] + opts)
        return self.require(osp.join(wd, 'tokenizer.pth'), 'tokenizer training')

    def train_predictor(self, tokenizer_file):
        wd = self.path('predictor')
        opts = (self.data_options()
                + schedule_options(self.args.predictor_iters, batch_size=self.args.batch_size)
                + self.tokenizer_options('model.tokenizer')
                + self.predictor_options('model.token_predictor')
                + [f'model.tokenizer.checkpoint={tokenizer_file}'])
        self.run('2_predictor', ['tools/train.py', CONFIGS['predictor'], '--work-dir', wd,
                                 '--cfg-options'] + opts)
        return self.require(osp.join(wd, 'token_predictor.pth'), 'token predictor training')

    def frozen_part_options(self, tokenizer_file, predictor_file):
        return ([f'model.target_generator.tokenizer.checkpoint={tokenizer_file}',
                 f'model.target_generator.token_predictor.checkpoint={predictor_file}']
                + self.tokenizer_options('model.target_generator.tokenizer')
                + self.predictor_options('model.target_generator.token_predictor'))

    def train_addp(self, tokenizer_file, predictor_file):
        wd = self.path('addp')
        opts = (self.data_options()
                + schedule_options(self.args.addp_iters, warmup=20, batch_size=self.args.batch_size)
                + self.frozen_part_options(tokenizer_file, predictor_file))
        self.run('3_addp', ['tools/train.py', CONFIGS['addp'], '--work-dir', wd,
                            '--cfg-options'] + opts)
        ckpt = self.require(osp.join(wd, f'iter_{self.args.addp_iters}.pth'), 'ADDP pretraining')
        return ckpt, self.require(osp.join(wd, 'backbone.pth'), 'ADDP pretraining')

    def generate(self, ckpt, tokenizer_file, predictor_file):
        out = self.path('samples')
        shutil.rmtree(out, ignore_errors=True)
        cmd = ['tools/generate.py', CONFIGS['addp'], ckpt, '--num-images',
               str(self.args.num_samples), '--out-dir', out, '--steps', str(self.args.gen_steps),
               '--batch-size', str(min(100, self.args.num_samples)), '--seed', '0',
               '--no-progress']
        if self.args.device:
            cmd += ['--device', self.args.device]
        self.run('4_generate', cmd + ['--cfg-options']
                 + self.frozen_part_options(tokenizer_file, predictor_file))
        grid = self.require(osp.join(out, 'grid.png'), 'generation')
        # the grid leaves the sample folder, which the FID reads
        return shutil.move(grid, self.path('samples_grid.png'))

    # ------------------------------------------------------------------ evaluation
    def device(self):
        import torch
        if self.args.device:
            return torch.device(self.args.device)
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')

    def val_images(self):
        """Val digits as float RGB [0, 1] (N x 3 x H x W), in a fixed order."""
        import numpy as np
        import torch
        from PIL import Image
        files = sorted(glob.glob(osp.join(self.args.data_root, 'val', '*', '*.png')))
        if not files:
            raise RuntimeError(f'no val images under {self.args.data_root}/val/<class>/')
        arrays = []
        for f in files:
            with Image.open(f) as img:
                arrays.append(np.asarray(img.convert('RGB'), dtype=np.float32) / 255.)
        return files, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def build_part(self, cfg_file, key, checkpoint):
        """The tokenizer / token predictor as the ADDP config builds it, from the file."""
        sys.path.insert(0, ROOT)
        from mmengine.config import Config
        from mmengine.registry import MODELS
        from addp_mm.engine.config import cfg_options_dict
        import addp_mm  # noqa: F401 (registers)
        cfg = Config.fromfile(cfg_file)
        opts = cfg_options_dict(self.frozen_part_options(*checkpoint))
        cfg.merge_from_dict(opts)
        noiser = cfg.model.target_generator
        part = dict(noiser[key])
        if key == 'token_predictor':
            from addp_mm.models.target_generators.mage_token_predictor import fit_to_tokenizer
            part = fit_to_tokenizer(part, MODELS.build(dict(noiser.tokenizer, checkpoint=None)))
        module = MODELS.build(part)
        module.init_weights()
        return module.eval().to(self.device())

    def save_pngs(self, images, folder):
        import numpy as np
        from PIL import Image
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for i, a in enumerate(arr):
            Image.fromarray(np.ascontiguousarray(a)).save(osp.join(folder, f'{i:06d}.png'))
        return folder

    def evaluate_parts(self, tokenizer_file, predictor_file):
        import torch
        from torchvision.utils import save_image
        files, x = self.val_images()
        dev = self.device()
        parts = (tokenizer_file, predictor_file)
        tok = self.build_part(CONFIGS['addp'], 'tokenizer', parts)
        tp = self.build_part(CONFIGS['addp'], 'token_predictor', parts)
        recs, ids = [], []
        with torch.no_grad():
            for chunk in x.split(128):
                z_q, idx = tok.encode(chunk.to(dev))
                recs.append(tok.decode(z_q).clamp(0, 1).cpu())
                ids.append(idx.cpu())
        rec, ids = torch.cat(recs), torch.cat(ids)
        mse = float(((rec - x) ** 2).mean())
        mean_image_mse = float(((x - x.mean(0, keepdim=True)) ** 2).mean())  # the best constant
        per_image = ((rec - x) ** 2).flatten(1).mean(1).clamp_min(1e-10)
        hist = torch.bincount(ids.flatten(), minlength=tok.n_embed).double()
        p = hist / hist.sum()
        perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
        self.results['tokenizer'] = dict(
            val_mse=mse, mean_image_mse=mean_image_mse,
            val_psnr_db=float((-10 * per_image.log10()).mean()),
            codes_used=int((hist > 0).sum()), codebook_size=tok.n_embed,
            perplexity=perplexity, num_val_images=len(files))
        n = min(20, x.shape[0])
        pick = torch.linspace(0, x.shape[0] - 1, n).round().long()  # spread over the classes
        save_image(torch.cat([x[pick], rec[pick]]), self.path('reconstructions.png'), nrow=n,
                   padding=1)
        self.save_pngs(rec, self.path('fid', 'reconstructions'))
        self.save_pngs(x, self.path('fid', 'val'))
        # the ceiling: uniformly random token grids through the decoder
        g = torch.Generator().manual_seed(0)
        rand_ids = torch.randint(0, tok.n_embed, (self.num_random_token_decodes(), ids.shape[1]),
                                 generator=g)
        with torch.no_grad():
            rand = torch.cat([tok.decode_indices(c.to(dev)).clamp(0, 1).cpu()
                              for c in rand_ids.split(128)])
        self.save_pngs(rand, self.path('fid', 'random_tokens'))
        # the token predictor: masked-token accuracy at a fixed ratio 0.5 (a fixed mask)
        num_tokens = ids.shape[1]
        num_masked = int(math.ceil(0.5 * num_tokens))
        noise = torch.rand(ids.shape, generator=torch.Generator().manual_seed(0))
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask.scatter_(1, noise.argsort(1)[:, :num_masked], True)
        correct = 0
        with torch.no_grad():
            for i_chunk, m_chunk in zip(ids.split(128), mask.split(128)):
                probs = tp(i_chunk.to(dev), m_chunk.to(dev)).flatten(2)  # B x K x N
                pred = probs.argmax(1).cpu()
                correct += int(((pred == i_chunk) & m_chunk).sum())
        # the majority-code baseline: always predicting the most frequent code
        self.results['token_predictor'] = dict(
            val_masked_acc_at_0_5=correct / int(mask.sum()),
            most_frequent_code_acc=float(hist.max() / hist.sum()))

    def num_random_token_decodes(self) -> int:
        """As many as the samples, so that both FIDs have the same small-sample bias; at least
        what a toy FID needs."""
        return max(self.args.num_samples, toy_metrics().FID_MIN_IMAGES)

    def explain_missing(self, path: str, reason: str) -> None:
        """``results.json``'s value at ``path`` is null, for ``reason`` (in the table: n/a)."""
        self.not_measured[path] = f'quick run: {reason}' if self.args.quick else reason

    def evaluate_generation(self, addp_wd):
        self.results['addp'] = dict(self.loss_summary(addp_wd))
        for part, wd in (('tokenizer', 'tokenizer'), ('token_predictor', 'predictor')):
            self.results.setdefault(part, {}).update(
                {f'training_{k}': v for k, v in self.loss_summary(self.path(wd)).items()})
        tm = toy_metrics()
        self.results['addp']['loss_curve'] = tm.plot_loss_curve(addp_wd, self.path('addp_loss.png'))
        clf = self.path('digit_classifier.pth')
        if self.args.reuse and osp.isfile(clf):
            acc = tm.digit_classifier_accuracy(tm.load_digit_classifier(clf), self.args.data_root)
            self.log(f'  digit classifier: reusing {clf}')
        else:
            acc = tm.train_digit_classifier(self.args.data_root, clf, seed=0, quick=self.args.quick)
        val = self.path('fid', 'val')
        n = self.args.num_samples
        self.results['fid'] = dict(
            classifier_val_acc=acc,
            samples=tm.toy_fid(clf, self.path('samples'), val) if n >= tm.FID_MIN_IMAGES else None,
            reconstructions_floor=tm.toy_fid(clf, self.path('fid', 'reconstructions'), val),
            random_tokens_ceiling=tm.toy_fid(clf, self.path('fid', 'random_tokens'), val),
            num_samples=n, num_random_token_decodes=self.num_random_token_decodes())
        if n < tm.FID_MIN_IMAGES:
            self.explain_missing('fid.samples',
                                 f'{n} samples; a toy FID needs at least {tm.FID_MIN_IMAGES}')

    def loss_summary(self, wd):
        """First and last logged training loss of the latest run in ``wd``."""
        runs = sorted(glob.glob(osp.join(wd, '*', 'vis_data', 'scalars.json')))
        if not runs:
            return {}
        losses = []
        with open(runs[-1]) as f:
            for line in f:
                rec = json.loads(line)
                if 'loss' in rec:
                    losses.append(rec['loss'])
        return dict(first_loss=losses[0], last_loss=losses[-1]) if losses else {}

    def downstream(self, backbone):
        tm = toy_metrics()
        out = {}
        for mode in ('linear', 'finetune10'):
            for init, ckpt in (('addp', backbone), ('random', None)):
                key = f'{mode}_{init}'
                if init == 'random' and self.args.quick:
                    # --quick checks the handoffs; the baseline reads no earlier file
                    out[key] = None
                    self.explain_missing(f'downstream.{key}', 'no random-init baseline')
                    continue
                handoff_only = tm.QUICK_HANDOFF_ONLY.get(mode) if self.args.quick else None
                accs = []
                for seed in self.args.seeds:
                    acc, secs, reused = self.downstream_once(
                        tm, mode, ckpt, seed, self.path('downstream', f'{key}_seed{seed}'))
                    accs.append(acc)
                    self.reused_s += secs if reused else 0.
                    shown = f'ran ({handoff_only})' if handoff_only else f'{acc:.2f}%'
                    self.log(f'  downstream {mode} {init} seed {seed}: {shown} '
                             f'({secs:.0f} s{", earlier run, reused" if reused else ""})')
                out[key] = None if handoff_only else dict(per_seed=accs, mean=mean(accs),
                                                          std=std(accs))
                if handoff_only:
                    self.explain_missing(f'downstream.{key}', handoff_only)
        self.results['downstream'] = out

    def evaluate_edits(self, ckpt, tokenizer_file, predictor_file):
        """Step 8: ``toy_metrics.edit_metrics`` on the val digits with the chain's ADDP checkpoint,
        tokenizer and digit classifier."""
        from addp_mm.apis import build_generation_model
        from addp_mm.engine.config import cfg_options_dict
        from addp_mm.models.generation import build_sampler
        tm = toy_metrics()
        model, cfg = build_generation_model(
            CONFIGS['addp'], ckpt, self.device(),
            cfg_options_dict(self.frozen_part_options(tokenizer_file, predictor_file)))
        sampler = build_sampler(cfg.get('sampler'), num_steps=self.args.gen_steps)
        classifier = tm.load_digit_classifier(self.path('digit_classifier.pth'))
        x, labels, _ = tm.class_folder_split(osp.join(self.args.data_root, 'val'), 32)
        if self.args.edit_digits:  # every k-th digit: all classes (the folders are in class order)
            every = max(1, len(labels) // self.args.edit_digits)
            x, labels = x[::every][:self.args.edit_digits], labels[::every][:self.args.edit_digits]
        self.results['edits'] = tm.edit_metrics(model, sampler, classifier, x.expand(-1, 3, -1, -1),
                                                labels, seeds=self.args.seeds)
        # the encoder, decoder and tokenizer in one small file (tests/assets/toy_chain)
        self.results['edits']['generation_checkpoint'] = tm.generation_checkpoint(
            ckpt, tokenizer_file, self.path('edits', 'generation.pth'))

    def downstream_once(self, tm, mode, ckpt, seed, work_dir):
        """One downstream run (``toy_metrics.downstream_command``); its accuracy and time go to
        ``WORK_DIR/result.json`` (reused with ``--reuse``). Returns (accuracy %, seconds,
        reused)."""
        marker = osp.join(work_dir, 'result.json')
        backbone = osp.abspath(ckpt) if ckpt else None
        if self.args.reuse and osp.isfile(marker):
            with open(marker) as f:
                rec = json.load(f)
            if rec.get('backbone') == backbone:
                return rec['accuracy'], rec['time_s'], True
        t = time.time()
        cmd = tm.downstream_command(mode, ckpt, seed, work_dir, data_root=self.args.data_root,
                                    quick=self.args.quick)
        self.run(f'downstream {mode} seed {seed}', cmd[1:],
                 log_file=osp.join(work_dir, f'train_{mode}.log'))
        rec = dict(mode=mode, seed=seed, backbone=backbone,
                   accuracy=tm.read_val_metric(work_dir), time_s=round(time.time() - t, 1))
        with open(marker, 'w') as f:
            json.dump(rec, f)
        return rec['accuracy'], rec['time_s'], False

    # ------------------------------------------------------------------ the whole chain
    def __call__(self):
        a = self.args
        os.makedirs(self.work_dir, exist_ok=True)
        if not osp.isdir(a.data_root):
            self.step('data', self.run, '0_data', ['tools/make_demo_data.py',
                                                   osp.dirname(a.data_root.rstrip('/')),
                                                   '--only', 'digits'])
        self.step('0 imports (torch, mmengine, mmpretrain, addp_mm)', import_stack)
        tok = self.step('1 tokenizer training', self.train_tokenizer,
                        reuse=[self.path('tokenizer', 'tokenizer.pth')])
        tp = self.step('2 token predictor training', self.train_predictor, tok,
                       reuse=[self.path('predictor', 'token_predictor.pth')])
        ckpt, backbone = self.step('3 ADDP pretraining', self.train_addp, tok, tp,
                                   reuse=[self.path('addp', f'iter_{a.addp_iters}.pth'),
                                          self.path('addp', 'backbone.pth')])
        self.step('4 generation', self.generate, ckpt, tok, tp,
                  reuse=[self.path('samples_grid.png')])
        self.step('5 tokenizer / token predictor evaluation', self.evaluate_parts, tok, tp)
        self.step('6 loss curve, digit classifier, toy FID', self.evaluate_generation,
                  self.path('addp'))
        if not a.skip_downstream:
            self.step('7 downstream (linear probe, 10%-label fine-tune)', self.downstream,
                      backbone)
        if a.edits:
            self.step('8 edits of the val digits (inpainting, variations)', self.evaluate_edits,
                      ckpt, tok, tp)
        self.results['files'] = dict(tokenizer=tok, token_predictor=tp, addp_checkpoint=ckpt,
                                     backbone=backbone, samples_grid=self.path('samples_grid.png'),
                                     reconstructions=self.path('reconstructions.png'))
        self.results['settings'] = {k: v for k, v in vars(a).items() if k != 'debug'}
        self.results['wall_time_s'] = dict(self.times,
                                           total=round(time.time() - self.t0 + self.reused_s, 1))
        # this run's steps (a reused step's CPU time is not recorded)
        self.results['cpu_time_s'] = dict(self.cpu_times,
                                          total=round(cpu_seconds() - self.cpu0, 1))
        self.results['not_measured'] = self.not_measured
        if a.quick:
            self.results['quick_run'] = quick_run_caveat(a)
        table = results_table(self.results)
        if 'edits' in self.results:
            table += '\n\n' + edits_table(self.results['edits'])
        with open(self.path('results.json'), 'w') as f:
            json.dump(self.results, f, indent=2)
        with open(self.path('results.md'), 'w') as f:
            f.write(table + '\n')
        print(table, flush=True)
        self.log(f'wrote {self.path("results.md")} and {self.path("results.json")}')


def schedule_options(iters: int, warmup: int = 50, batch_size=None):
    """``--cfg-options`` for a training config's ``iters``-iteration run: the linear warm-up
    (``param_scheduler.0``) over ``warmup`` iterations, at most a fifth of the run and at least 2
    (mmengine's ``LinearLR`` over one iteration stays at its start factor), then the cosine decay
    (``param_scheduler.1``); a checkpoint at the end, about 10 logged losses."""
    warmup = max(2, min(warmup, iters // 5))
    opts = [f'train_cfg.max_iters={iters}',
            f'param_scheduler.0.end={warmup}', f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={max(iters, warmup + 1)}',
            f'default_hooks.checkpoint.interval={iters}',
            f'default_hooks.logger.interval={max(1, min(50, iters // 10))}']
    if batch_size:
        opts.append(f'train_dataloader.batch_size={batch_size}')
    return opts


@contextlib.contextmanager
def output_to(file):
    """Everything written to this process's stdout and stderr (Python's and C's) goes to
    ``file`` inside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def import_stack() -> None:
    """What every step uses, imported once for all of them."""
    import mmpretrain.models  # noqa: F401 (the downstream configs' scope)

    import addp_mm  # noqa: F401 (registers)
    toy_metrics()


def quick_run_caveat(args) -> str:
    """The line above a ``--quick`` run's table."""
    batch = f' at batch {args.batch_size}' if args.batch_size else ''
    return (f'Quick run (--quick): {args.tokenizer_iters} / {args.predictor_iters} / '
            f'{args.addp_iters} training iterations{batch}, {args.num_samples} samples, a '
            'one-epoch linear probe, one seed: the directions a working chain shows, not what '
            'the default run measures (docs/user_guides/train_every_part.md).')


def toy_metrics():
    """``tools/toy_metrics.py`` (the evaluation side), imported when first needed."""
    import toy_metrics as tm
    return tm


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def mean(xs):
    return sum(xs) / len(xs)


def std(xs):
    """Sample standard deviation (0 for one value)."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _accuracy_over_seeds(r) -> str:
    if len(r['per_seed']) == 1:
        return f'{r["mean"]:.1f} %'
    seeds = ', '.join(f'{v:.1f}' for v in r['per_seed'])
    return f'{r["mean"]:.1f} ± {r["std"]:.1f} % (seeds: {seeds})'


# (row, where its value is in results.json, how it is printed)
ROWS = [
    ('tokenizer: val reconstruction MSE / PSNR (MSE of the mean image)', 'tokenizer',
     lambda r: f'{r["val_mse"]:.4f} / {r["val_psnr_db"]:.1f} dB ({r["mean_image_mse"]:.4f})'),
    ('tokenizer: codebook usage on val (codes used / size, perplexity)', 'tokenizer',
     lambda r: f'{r["codes_used"]} / {r["codebook_size"]}, {r["perplexity"]:.1f}'),
    ('token predictor: masked-token accuracy on val, mask ratio 0.5 (most-frequent-code baseline)',
     'token_predictor',
     lambda r: (f'{100 * r["val_masked_acc_at_0_5"]:.1f}% '
                f'({100 * r["most_frequent_code_acc"]:.1f}%)')),
    ('ADDP pretraining: training loss first -> last logged (curve: addp_loss.png)', 'addp',
     lambda r: f'{r["first_loss"]:.3f} -> {r["last_loss"]:.3f}'),
    ('digit classifier for the toy FID: val accuracy', 'fid.classifier_val_acc',
     lambda v: f'{100 * v:.1f}%'),
    ('toy FID vs val: ADDP samples', 'fid.samples', lambda v: f'{v:.2f}'),
    ('toy FID vs val: tokenizer reconstructions (floor)', 'fid.reconstructions_floor',
     lambda v: f'{v:.2f}'),
    ('toy FID vs val: random-token decodes (ceiling)', 'fid.random_tokens_ceiling',
     lambda v: f'{v:.2f}'),
]
DOWNSTREAM_ROWS = [
    ('linear probe, ADDP-pretrained encoder: val top-1', 'downstream.linear_addp',
     _accuracy_over_seeds),
    ('linear probe, random-init encoder: val top-1', 'downstream.linear_random',
     _accuracy_over_seeds),
    ('fine-tune on 10% of labels, ADDP-pretrained: val top-1', 'downstream.finetune10_addp',
     _accuracy_over_seeds),
    ('fine-tune on 10% of labels, random init: val top-1', 'downstream.finetune10_random',
     _accuracy_over_seeds),
]


def lookup(results: dict, path: str):
    """The value at a dotted ``path`` of ``results`` (None where absent)."""
    value = results
    for key in path.split('.'):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def results_table(results) -> str:
    """The measurements (``n/a (why)`` for a value ``results['not_measured']`` explains) and the
    time of each step; a quick run's caveat first."""
    lines = [results['quick_run'], ''] if results.get('quick_run') else []
    lines += ['| measurement | value |', '| --- | --- |']
    why = results.get('not_measured', {})
    for name, path, fmt in ROWS + DOWNSTREAM_ROWS:
        value = lookup(results, path)
        try:
            text = 'n/a' if value is None else fmt(value)
        except KeyError:  # a part that logged nothing
            text = 'n/a'
        if value is None and path in why:
            text += f' ({why[path]})'
        lines.append(f'| {name} | {text} |')
    wall, cpu = results.get('wall_time_s', {}), results.get('cpu_time_s', {})
    lines += ['', '| step | wall time (s) | CPU time (s) |', '| --- | --- | --- |']
    for step, seconds in wall.items():
        cells = [v if isinstance(v, str) else f'{v:.0f}' for v in (seconds, cpu.get(step, '-'))]
        lines.append(f'| {step} | {cells[0]} | {cells[1]} |')
    return '\n'.join(lines)


def _over_seeds(values, scale=100., unit=' %', digits=1) -> str:
    """``mean ± std`` of a per-seed list (a single value as it is)."""
    if not isinstance(values, list):
        return f'{scale * values:.{digits}f}{unit}'
    values = [scale * v for v in values]
    if len(values) == 1:
        return f'{values[0]:.{digits}f}{unit}'
    return f'{mean(values):.{digits}f} ± {std(values):.{digits}f}{unit}'


def edits_table(edits) -> str:
    """Step 8's tables: the digit classifier on the edits, the known region, the variations."""
    share = edits['classified_as_original']
    seeds = ', '.join(str(s) for s in edits['seeds'])
    regions = list(edits['known'])
    lines = [f'Edits of the {edits["num_images"]} val digits ({edits["num_steps"]} steps; '
             f'± the sample std over sampler seeds {seeds}): classified as the original\'s class',
             '', '| | ' + ' | '.join(r.replace('_', ' ') for r in regions) + ' |',
             '| --- |' + ' --- |' * len(regions)]
    rows = [('original digit', lambda r: share['original']),
            ('VQ reconstruction of the whole digit (ceiling)', lambda r: share['reconstruction']),
            ('**inpainted**', lambda r: share[f'{r}_inpainted']),
            ('filled with grey', lambda r: share[f'{r}_grey_fill']),
            ('filled with black (the background)', lambda r: share[f'{r}_black_fill']),
            ('unconditional sample', lambda r: share['unconditional'])]
    for name, value in rows:
        lines.append(f'| {name} | ' + ' | '.join(_over_seeds(value(r)) for r in regions) + ' |')
    h, w = edits['grid_hw']
    lines += ['', 'Known region: tokens that differ from the image\'s, and pixels vs the VQ '
              'reconstruction (grey levels 0-255, all seeds) by distance to the region in tokens '
              '(0: the region)', '',
              '| region | known tokens changed | distance | mean abs diff | max abs diff | '
              'pixels equal |', '| --- | --- | --- | --- | --- | --- |']
    for region, known in edits['known'].items():
        for d, row in known['by_distance'].items():
            changed = (f'{known["known_token_mismatches"]} of {known["checked_tokens"]}'
                       if d == '0' else '')
            lines.append(f'| {region.replace("_", " ") if d == "0" else ""} | {changed} | {d} | '
                         f'{row["mean"]:.2f} | {row["max"]:.1f} | {100 * row["equal"]:.1f} % |')
    lines += ['', f'Variations ({h * w} tokens; distances to the VQ reconstruction)', '',
              '| ratio | tokens re-generated | tokens changed | mean abs pixel diff (0-255) | '
              'classifier-feature distance | classified as the original\'s class |',
              '| --- | --- | --- | --- | --- | --- |']
    for ratio, row in edits['variations'].items():
        lines.append(f'| {ratio} | {_over_seeds(row["regenerated"])} | '
                     f'{_over_seeds(row["changed"])} | '
                     f'{_over_seeds(row["pixel_distance"], 1., "", 2)} | '
                     f'{_over_seeds(row["feature_distance"], 1., "", 3)} | '
                     f'{_over_seeds(row["classified_as_original"])} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    before_heavy_imports()
    if not osp.isdir(osp.join(ROOT, 'configs', 'toy')):
        raise UsageError('configs/toy/ not found: run from an addp-mm checkout')
    missing = [d for d in ('train', 'val', 'meta') if not osp.isdir(osp.join(args.data_root, d))]
    if osp.isdir(args.data_root) and missing:  # an absent one is written (make_demo_data.py)
        raise UsageError(f'--data-root {args.data_root}: no {"/, ".join(missing)}/ folder; lay it '
                         'out like data/demo/digits (train/<class>/*.png, val/<class>/*.png, '
                         'meta/*.txt) or give a folder that does not exist yet to have the digits '
                         'written there')
    if args.device == 'cpu':  # the training tools' default is a GPU: none is seen from here on
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            raise UsageError('--device cuda: this machine has no CUDA device; run with --device cpu')
    # the downstream configs ask for deterministic kernels: cuBLAS then needs this on a GPU
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    Pipeline(args)()


if __name__ == '__main__':
    run_tool(main)
