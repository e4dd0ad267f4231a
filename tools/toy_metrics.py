"""The evaluation side of the toy pipeline (tools/run_toy_pipeline.py,
docs/user_guides/train_every_part.md) on scikit-learn's handwritten digits
(``tools/make_demo_data.py data/demo --only digits``):

* :func:`train_digit_classifier` - a small CNN whose penultimate features stand in for
  Inception's in a toy FID (:func:`toy_fid`), as FID's Inception is meaningless on 32-px digits;
* :func:`plot_loss_curve`, :func:`read_val_metric` - read mmengine's ``scalars.json`` of a run;
* :func:`run_downstream` - the downstream runs (linear probe, fine-tuning with 10% of the labels)
  of ``configs/toy/`` through ``tools/train.py``, from a pretrained or a random encoder.

The Frechet distance itself is ``addp_mm.evaluation.fid``'s (torch-fidelity's formula).
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOWNSTREAM_CONFIGS = {mode: osp.join(ROOT, 'configs', 'toy', name) for mode, name in dict(
    linear='vit-demo-p4_linear-probe_1xb64-15e_digits-32px.py',
    finetune10='vit-demo-p4_1xb32-60e_digits-10pct-32px.py',
).items()}
CLASSIFIER_FEATURES = 64  # width of the penultimate layer = dimension of the toy FID's features
QUICK_CLASSIFIER_EPOCHS = 3  # train_digit_classifier(quick=True)
# downstream_command(quick=True): the linear probe trains one epoch on every training label and
# is validated on the whole val split (above chance from any encoder); the runs of these modes are
# too short to say anything, their accuracy is not reported (tools/run_toy_pipeline.py)
QUICK_HANDOFF_ONLY = {'finetune10': '2 iterations on 8 images check the handoff, not the accuracy'}
# a toy FID over fewer images is not reported (tools/run_toy_pipeline.py): twice the features, so
# that the covariance is far from singular
FID_MIN_IMAGES = 2 * CLASSIFIER_FEATURES


# ---------------------------------------------------------------------------------------------
# the digit classifier (feature extractor of the toy FID)
# ---------------------------------------------------------------------------------------------
def _conv_bn(cin: int, cout: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class DigitClassifier(nn.Module):
    """Three 3x3 conv + BN + ReLU stages (32 -> 16 -> 8 px), global average pooling to
    :data:`CLASSIFIER_FEATURES` features, a linear layer to the classes. Input: ``B x 1 x H x W``
    grayscale in [0, 1]."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(1, width), nn.MaxPool2d(2),
            *_conv_bn(width, 2 * width), nn.MaxPool2d(2),
            *_conv_bn(2 * width, CLASSIFIER_FEATURES),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(CLASSIFIER_FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _load_gray(path: str, img_size: int) -> np.ndarray:
    """Any image file -> ``img_size`` x ``img_size`` float32 grayscale in [0, 1]."""
    with Image.open(path) as img:
        img = img.convert('L')
        if img.size != (img_size, img_size):
            img = img.resize((img_size, img_size), Image.BILINEAR)
        return np.asarray(img, np.float32) / 255.


def _load_images(files: Sequence[str], img_size: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([_load_gray(f, img_size) for f in files]))[:, None]


def class_folder_split(split_dir: str,
                       img_size: int) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """Images and labels of ``split_dir/<class>/*`` (labels = sorted class folder index)."""
    from addp_mm.evaluation.fid import list_images
    if not osp.isdir(split_dir):
        raise FileNotFoundError(f'{split_dir!r} not found: the digits come from '
                                'python tools/make_demo_data.py data/demo --only digits')
    classes = sorted(d for d in os.listdir(split_dir) if osp.isdir(osp.join(split_dir, d)))
    if not classes:
        raise FileNotFoundError(f'{split_dir!r} has no class folders (<class>/<image>.png)')
    files, labels = [], []
    for i, name in enumerate(classes):
        found = list_images(osp.join(split_dir, name))
        files += found
        labels += [i] * len(found)
    return _load_images(files, img_size), torch.tensor(labels), classes


def train_digit_classifier(data_root: str, out_file: str, seed: int = 0, quick: bool = False,
                           epochs: int = 8, batch_size: int = 64, lr: float = 3e-3,
                           img_size: int = 32) -> float:
    """Train :class:`DigitClassifier` on ``data_root/train/<d>/*.png``, save its plain state dict
    (``torch.load(out_file, weights_only=True)``) and return its accuracy on ``data_root/val``
    (0..1). ``quick``: :data:`QUICK_CLASSIFIER_EPOCHS` epochs instead of ``epochs`` (on the
    digits 89 % instead of 96 %, ``tests/test_toy_metrics.py``).

    Adam with a one-cycle schedule, random shifts of up to 2 px as augmentation.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_train, y_train, classes = class_folder_split(osp.join(data_root, 'train'), img_size)
    model = DigitClassifier(len(classes))
    steps_per_epoch = -(-len(x_train) // batch_size)
    total = (QUICK_CLASSIFIER_EPOCHS if quick else epochs) * steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    model.train()
    step = 0
    while step < total:
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), batch_size):
            if step == total:
                break
            idx = order[i:i + batch_size]
            x = x_train[idx]
            # random shifts by up to 2 px (zero padding)
            dx, dy = torch.randint(-2, 3, (2, ), generator=gen).tolist()
            x = torch.roll(F.pad(x, (2, 2, 2, 2)), (dy, dx), (2, 3))[..., 2:-2, 2:-2]
            loss = F.cross_entropy(model(x), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    torch.save(model.state_dict(), out_file)
    return digit_classifier_accuracy(model.eval(), data_root, classes, img_size)


def digit_classifier_accuracy(model: DigitClassifier, data_root: str,
                              classes: Optional[Sequence[str]] = None, img_size: int = 32) -> float:
    """Top-1 accuracy (0..1) of ``model`` (in eval mode) on ``data_root/val/<class>/*``;
    ``classes``: the training split's class folders, checked to be the val split's."""
    x_val, y_val, val_classes = class_folder_split(osp.join(data_root, 'val'), img_size)
    if classes is not None and list(val_classes) != list(classes):
        raise ValueError(f'{data_root}: train classes {list(classes)} and val classes '
                         f'{val_classes} differ')
    with torch.no_grad():
        pred = torch.cat([model(x_val[i:i + 256]).argmax(1) for i in range(0, len(x_val), 256)])
    return float((pred == y_val).float().mean())


def load_digit_classifier(classifier_file: str) -> DigitClassifier:
    """The classifier :func:`train_digit_classifier` saved (weights only), in eval mode."""
    if not osp.isfile(classifier_file):
        raise FileNotFoundError(f'digit classifier {classifier_file!r} not found (written by '
                                'tools/toy_metrics.py:train_digit_classifier)')
    state = torch.load(classifier_file, map_location='cpu', weights_only=True)
    model = DigitClassifier(num_classes=state['fc.weight'].shape[0])
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def classifier_features(model: DigitClassifier, folder: str, img_size: int = 32,
                        batch_size: int = 256) -> torch.Tensor:
    """Penultimate features (``N x 64``) of every image under ``folder`` (sub-folders too;
    ``grid.png`` written by tools/generate.py is skipped)."""
    from addp_mm.evaluation.fid import list_images
    files = list_images(folder, recursive=True)
    feats = [model.features(_load_images(files[i:i + batch_size], img_size))
             for i in range(0, len(files), batch_size)]
    return torch.cat(feats).double()


def toy_fid(classifier_file: str, folder_a: str, folder_b: str, img_size: int = 32) -> float:
    """FID between the images of two folders (recursive; any size and mode, read as grayscale
    ``img_size`` px) on the digit classifier's penultimate features. The statistics and the
    Frechet distance are torch-fidelity's (``addp_mm.evaluation.fid``). With fewer images than
    features (64) the covariances are singular; torch-fidelity then regularises the square root:
    use a few hundred images per folder."""
    from addp_mm.evaluation.fid import fid_from_statistics, statistics_from_features
    model = load_digit_classifier(classifier_file)
    stats = [statistics_from_features(classifier_features(model, f, img_size))
             for f in (folder_a, folder_b)]
    return fid_from_statistics(*stats)


# ---------------------------------------------------------------------------------------------
# mmengine logs
# ---------------------------------------------------------------------------------------------
def latest_scalars_file(work_dir: str) -> str:
    """``<work_dir>/<timestamp>/vis_data/scalars.json`` of the latest run (timestamps sort)."""
    files = sorted(glob.glob(osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no <timestamp>/vis_data/scalars.json under {work_dir!r}: not an '
                                'mmengine work dir, or the run logged nothing yet')
    return files[-1]


def read_scalars(work_dir: str) -> List[Dict]:
    """The json lines of the latest run's ``scalars.json``."""
    path = latest_scalars_file(work_dir)
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_loss_curve(work_dir: str, out_png: str, key: str = 'loss') -> str:
    """Plot ``key`` against the iteration for the latest run in ``work_dir`` (matplotlib, Agg);
    returns ``out_png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    rows = [r for r in read_scalars(work_dir) if key in r]
    if not rows:
        raise KeyError(f'{latest_scalars_file(work_dir)}: no {key!r} values')
    xs = [r.get('iter', r.get('step')) for r in rows]
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(xs, [r[key] for r in rows], lw=1.2)
    ax.set_xlabel('iteration')
    ax.set_ylabel(key)
    ax.set_title(f'{key}: {osp.basename(osp.normpath(work_dir))}')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png)
    return out_png


def read_val_metric(work_dir: str, key: str = 'accuracy/top1') -> float:
    """The last logged value of ``key`` (a validation metric) in the latest run of ``work_dir``."""
    rows = [r for r in read_scalars(work_dir) if key in r]
    if not rows:
        raise KeyError(f'{latest_scalars_file(work_dir)}: no {key!r} values (did validation run?)')
    return float(rows[-1][key])


# ---------------------------------------------------------------------------------------------
# downstream runs
# ---------------------------------------------------------------------------------------------
def downstream_command(mode: str, backbone_checkpoint: Optional[str], seed: int, work_dir: str,
                       data_root: str = 'data/demo/digits', quick: bool = False) -> List[str]:
    """The ``tools/train.py`` command line of :func:`run_downstream` (paths absolute: it runs
    from any directory)."""
    if mode not in DOWNSTREAM_CONFIGS:
        raise ValueError(f'downstream mode {mode!r}: choose one of {sorted(DOWNSTREAM_CONFIGS)}')
    data_root = osp.abspath(data_root)
    # data_root: a path variable, carried by tools/train.py into every key built from it
    options = [f'randomness.seed={seed}', f'data_root={data_root}']
    if quick:  # one epoch; the fine-tune on 8 images (2 iterations), validated on 8
        options += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1']
        if mode in QUICK_HANDOFF_ONLY:
            options += ['train_dataloader.batch_size=4', 'train_dataloader.dataset.indices=8',
                        'val_dataloader.dataset.indices=8', 'test_dataloader.dataset.indices=8']
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), DOWNSTREAM_CONFIGS[mode],
           '--work-dir', osp.abspath(work_dir)]
    if backbone_checkpoint:  # model.backbone.init_cfg
        cmd += ['--pretrained', osp.abspath(backbone_checkpoint)]
    return cmd + ['--cfg-options'] + options


def run_downstream(mode: str, backbone_checkpoint: Optional[str], seed: int, work_dir: str,
                   data_root: str = 'data/demo/digits', quick: bool = False,
                   log_file: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> float:
    """Train ``mode`` ('linear': linear probe on all labels; 'finetune10': full fine-tuning on 10%
    of the labels) from ``backbone_checkpoint`` (a pretraining's backbone.pth; None: random init)
    with ``seed``, in a ``tools/train.py`` subprocess run from the repository root. Returns the
    final val top-1 accuracy in %.

    The subprocess's output goes to ``log_file`` (default ``work_dir/train_<mode>.log``); on
    failure its tail is in the error. ``env``: extra environment variables (e.g.
    ``OMP_NUM_THREADS``).
    """
    cmd = downstream_command(mode, backbone_checkpoint, seed, work_dir, data_root, quick)
    os.makedirs(work_dir, exist_ok=True)
    log_file = log_file or osp.join(work_dir, f'train_{mode}.log')
    run_env = dict(os.environ)
    # deterministic=True in the configs: cuBLAS needs this on a GPU (ignored on a CPU)
    run_env.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    run_env.update(env or {})
    start = time.time()
    with open(log_file, 'w') as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=run_env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_file) as log:
            tail = ''.join(log.readlines()[-15:])
        raise RuntimeError(f'downstream {mode} (seed {seed}) failed after '
                           f'{time.time() - start:.0f} s '
                           f'(exit {proc.returncode}); log {log_file}:\n{tail}')
    return read_val_metric(work_dir)


# ---------------------------------------------------------------------------------------------
# edits on held-out digits (tools/run_toy_pipeline.py --edits)
# ---------------------------------------------------------------------------------------------
# the regions inpainted, boxes (x0, y0, x1, y1) in pixels of the 32-px digits
EDIT_BOXES = {'lower_half': (0, 16, 32, 32), 'centre_box': (8, 8, 24, 24)}
VARIATION_RATIOS = (0.25, 0.5, 0.75)
FILL_GREY = 0.5  # the grey-fill baseline's pixels (the digits: white strokes on black)
# ITU-R 601 luma, as Pillow's convert('L') (rounded half up): the classifier's grayscale
LUMA = (0.299, 0.587, 0.114)


def classifier_input(images: torch.Tensor) -> torch.Tensor:
    """``B x 3 x H x W`` pixels as the tools save them (:func:`addp_mm.models.utils.to_uint8`) and
    read back as grayscale (Pillow's ``convert('L')``): ``B x 1 x H x W`` in [0, 1]."""
    from addp_mm.models.utils import to_uint8
    rgb = to_uint8(images).float()
    luma = torch.tensor(LUMA, dtype=rgb.dtype).view(1, 3, 1, 1)
    return torch.floor((rgb * luma).sum(1, keepdim=True) + 0.5) / 255.


@torch.no_grad()
def classify(model: DigitClassifier, images: torch.Tensor,
             batch_size: int = 256) -> Tuple[torch.Tensor, torch.Tensor]:
    """The predicted class and the penultimate features of ``B x 3 x H x W`` pixels."""
    preds, feats = [], []
    for chunk in images.split(batch_size):
        f = model.features(classifier_input(chunk.cpu()))
        feats.append(f)
        preds.append(model.fc(f).argmax(1))
    return torch.cat(preds), torch.cat(feats)


def token_distance(unknown: torch.Tensor) -> torch.Tensor:
    """``h x w`` int: each token's Chebyshev distance (in tokens) to the nearest unknown one (0 in
    the region)."""
    h, w = unknown.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    region = unknown.nonzero()
    dy = (ys.reshape(-1, 1) - region[:, 0]).abs()
    dx = (xs.reshape(-1, 1) - region[:, 1]).abs()
    return torch.maximum(dy, dx).amin(1).view(h, w)


def _batches(model, sampler, tokens: torch.Tensor, unknown: torch.Tensor, grid, generator,
             batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``ADDPSampler.edit`` over ``tokens`` / ``unknown`` (``B x N``) in batches drawn from one
    seeded ``generator``: the images (CPU) and the final tokens."""
    images, out = [], []
    for t, u in zip(tokens.split(batch_size), unknown.split(batch_size)):
        pixels, final = sampler.edit(model, t, u.to(t.device), grid_hw=grid, generator=generator)
        images.append(pixels.cpu())
        out.append(final.cpu())
    return torch.cat(images), torch.cat(out)


def edit_metrics(model, sampler, classifier: DigitClassifier, images: torch.Tensor,
                 labels: torch.Tensor, seeds: Sequence[int] = (0, 1, 2),
                 boxes: Optional[Dict[str, Sequence[int]]] = None,
                 ratios: Sequence[float] = VARIATION_RATIOS, batch_size: int = 128) -> Dict:
    """What the edits of ``addp_mm.apis.edit`` do to held-out digits, per sampler seed.

    ``images``: ``B x 3 x H x W`` in [0, 1] (the val digits), ``labels``: their classes. For each
    region of ``boxes`` (default :data:`EDIT_BOXES`; rounded to the token grid as
    ``edit.box_region`` does) the tokens of the region are generated by ``sampler.edit`` from the
    image's other tokens. Returns a dict (lists over ``seeds`` where a seed matters):

    * ``classified_as_original``: the share the digit classifier puts in the original's class,
      for the originals, their VQ reconstructions (ceiling), each region inpainted (per seed),
      filled with :data:`FILL_GREY` and with black (the background), and unconditional samples
      of ``sampler`` (per seed: sample ``i`` against digit ``i``'s class);
    * ``known``: per region, the known tokens that differ from the image's (all seeds; 0 when the
      edit keeps them) and the pixels' difference to the VQ reconstruction (grey levels, 0..255,
      all seeds) by the token distance to the region (0: the region itself): ``mean``, ``max``,
      the share ``equal`` after uint8 rounding, the pixel count;
    * ``variations``: per ratio (per seed) the share of tokens re-generated and changed, the mean
      absolute pixel distance (grey levels) and the classifier-feature distance (L2) to the VQ
      reconstruction, and the share still classified as the original's class.
    """
    from addp_mm.apis import edit
    from addp_mm.models.utils import to_uint8
    boxes = dict(EDIT_BOXES if boxes is None else boxes)
    device = next(model.parameters()).device
    tokens, grid = edit.encode_tokens(model, images)
    tokenizer = model.target_generator.tokenizer
    with torch.no_grad():
        recon = torch.cat([tokenizer.decode_indices(t, grid).float().cpu()
                           for t in tokens.split(batch_size)])
    recon_u8 = to_uint8(recon).float()
    _, recon_feats = classify(classifier, recon)
    B, factor = len(images), edit.token_factor(model)

    def share(pred):
        return float((pred == labels).float().mean())

    out = dict(num_images=B, seeds=list(seeds), grid_hw=list(grid), num_steps=sampler.num_steps,
               classified_as_original=dict(original=share(classify(classifier, images)[0]),
                                           reconstruction=share(classify(classifier, recon)[0]),
                                           unconditional=[]),
               known={}, variations={str(r): dict(regenerated=[], changed=[], pixel_distance=[],
                                                  feature_distance=[], classified_as_original=[])
                                      for r in ratios})
    regions = {name: edit.box_region(model, images.shape[-2:], box) for name, box in boxes.items()}
    for name, region in regions.items():
        for fill, value in (('grey_fill', FILL_GREY), ('black_fill', 0.)):
            filled = torch.where(region.pixels, torch.full_like(images, value), images)
            out['classified_as_original'][f'{name}_{fill}'] = share(classify(classifier, filled)[0])
        out['classified_as_original'][f'{name}_inpainted'] = []
        out['known'][name] = dict(box=list(boxes[name]), unknown_tokens=int(region.unknown.sum()),
                                  known_token_mismatches=0, checked_tokens=0, by_distance={})
    for seed in seeds:
        generator = torch.Generator(device=device).manual_seed(int(seed))
        for name, region in regions.items():
            unknown = region.unknown.reshape(1, -1).expand(B, -1)
            result, final = _batches(model, sampler, tokens, unknown, grid, generator, batch_size)
            out['classified_as_original'][f'{name}_inpainted'].append(
                share(classify(classifier, result)[0]))
            known = out['known'][name]
            known['known_token_mismatches'] += int((final != tokens.cpu())[~unknown].sum())
            known['checked_tokens'] += int((~unknown).sum())
            diff = (to_uint8(result).float() - recon_u8).abs().mean(1)  # B x H x W, grey levels
            distance = token_distance(region.unknown).repeat_interleave(factor, 0)
            distance = distance.repeat_interleave(factor, 1)
            for d in range(int(distance.max()) + 1):  # 0: the region itself
                at = diff[:, distance == d]
                row = known['by_distance'].setdefault(str(d), dict(sum=0., max=0., equal=0,
                                                                   pixels=0))
                row['sum'] += float(at.sum())
                row['max'] = max(row['max'], float(at.max()))
                row['equal'] += int((at == 0).sum())
                row['pixels'] += at.numel()
        samples = torch.cat([sampler.sample(model, len(c), generator=generator).cpu()
                             for c in labels.split(batch_size)])
        out['classified_as_original']['unconditional'].append(share(classify(classifier, samples)[0]))
        variation_generator = torch.Generator().manual_seed(int(seed))
        for r in ratios:
            unknown = edit.random_regions(grid, r, B, variation_generator)
            result, final = _batches(model, sampler, tokens, unknown, grid, generator, batch_size)
            pred, feats = classify(classifier, result)
            row = out['variations'][str(r)]
            row['regenerated'].append(float(unknown.float().mean()))
            row['changed'].append(float((final != tokens.cpu()).float().mean()))
            row['pixel_distance'].append(float((to_uint8(result).float() - recon_u8).abs().mean()))
            row['feature_distance'].append(float((feats - recon_feats).norm(dim=1).mean()))
            row['classified_as_original'].append(share(pred))
    for known in out['known'].values():
        for row in known['by_distance'].values():
            row['mean'] = row.pop('sum') / row['pixels']
            row['equal'] = row['equal'] / row['pixels']
    return out


def generation_checkpoint(addp_checkpoint: str, tokenizer_file: str, out_file: str,
                          dtype: torch.dtype = torch.float16) -> str:
    """A small file that ``build_generation_model`` loads alone: the encoder and decoder of a
    pretraining checkpoint (``backbone.*``, ``neck.*``) and the tokenizer under ``vqgan.*`` (as
    in the released files), floating tensors stored in ``dtype``; no optimizer state, no token
    predictor (tests/assets/toy_chain)."""
    from addp_mm.checkpoint import read_checkpoint, unwrap_state_dict
    state = unwrap_state_dict(read_checkpoint(addp_checkpoint, 'ADDP checkpoint'))
    tokenizer = unwrap_state_dict(read_checkpoint(tokenizer_file, 'tokenizer'))

    def small(v):
        return v.to(dtype) if v.is_floating_point() else v
    kept = {k: small(v) for k, v in state.items() if k.startswith(('backbone.', 'neck.'))}
    kept.update({f'vqgan.{k}': small(v) for k, v in tokenizer.items()})
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    torch.save({'state_dict': kept, 'meta': dict(source=osp.basename(addp_checkpoint),
                                                 tokenizer=osp.basename(tokenizer_file),
                                                 dtype=str(dtype))}, out_file)
    return out_file
