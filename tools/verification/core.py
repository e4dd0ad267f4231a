"""Rows, comparison and the reference-folder reader shared by every check module."""
import glob
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

DEFAULT_ATOL = 1e-4


@dataclass
class Row:
    """One recomputed output: ``key`` is the name it has in the vectors file."""
    key: str
    shape: str
    max_abs_err: Optional[float]
    passed: bool
    note: str = ''

    def format(self) -> str:
        err = '-' if self.max_abs_err is None else f'{self.max_abs_err:.3e}'
        status = 'PASS' if self.passed else 'FAIL'
        line = f'{self.key:<28} {self.shape:<22} {err:>10}  {status}'
        return f'{line}  {self.note}' if self.note else line


def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        return 'x'.join(str(s) for s in x.shape) or 'scalar'
    if isinstance(x, (list, tuple)):
        return f'list[{len(x)}]'
    return type(x).__name__


def compare(key: str, ours, theirs, atol: float = DEFAULT_ATOL, note: str = '',
            rtol: float = 0.) -> Row:
    """Compare a recomputed output with the recorded one (tensors, lists of tensors or plain values).

    Tensors must have the same shape; integer/bool tensors must match exactly; float ones pass
    where ``|ours - theirs| <= atol + rtol * |theirs|`` everywhere (the row shows the max abs error).
    """
    if isinstance(theirs, (list, tuple)) and theirs and isinstance(theirs[0], torch.Tensor):
        if len(ours) != len(theirs):
            return Row(key, _shape(theirs), None, False, f'length {len(ours)} != {len(theirs)}')
        rows = [compare(f'{key}[{i}]', o, t, atol, rtol=rtol) for i, (o, t) in enumerate(zip(ours, theirs))]
        err = max(r.max_abs_err or 0.0 for r in rows)
        return Row(key, f'{len(theirs)}x' + rows[0].shape, err, all(r.passed for r in rows), note)
    if isinstance(theirs, torch.Tensor):
        ours = torch.as_tensor(ours).detach().cpu()
        if tuple(ours.shape) != tuple(theirs.shape):
            return Row(key, _shape(theirs), None, False, f'shape {tuple(ours.shape)} != {tuple(theirs.shape)}')
        if theirs.numel() == 0:
            return Row(key, _shape(theirs), 0.0, True, note)
        if theirs.dtype in (torch.bool, torch.int64, torch.int32, torch.uint8):
            n_diff = int((ours.to(theirs.dtype) != theirs).sum())
            return Row(key, _shape(theirs), float(n_diff), n_diff == 0, note or 'exact match required')
        diff = (ours.double() - theirs.double()).abs()
        ok = bool((diff <= atol + rtol * theirs.double().abs()).all())
        return Row(key, _shape(theirs), float(diff.max()), ok, note)
    # plain values (ints, floats, strings, lists of strings)
    if isinstance(theirs, float):
        err = abs(float(ours) - theirs)
        return Row(key, 'scalar', err, err <= atol, note)
    same = (sorted(ours) == sorted(theirs)) if isinstance(theirs, (list, tuple)) else ours == theirs
    return Row(key, _shape(theirs), None, bool(same), note or ('same entries' if same else 'differs'))


class ReferenceDir:
    """A folder laid out like ``shared/reference`` (any variant name).

    Files are found by pattern, so ``vectors_public.pt`` and ``vectors_private.pt`` both work.
    """

    PATTERNS = dict(
        vectors='vectors_*.pt',
        addp='official_addp_*.pth',
        finetune='official_finetune_*.pth',
        token_predictor='mage_token_predictor_*.pth',
        vqgan='vqgan_*.ckpt',
        vqgan_yaml='vqgan_*.yaml',
    )

    def __init__(self, path: str):
        if not osp.isdir(path):
            raise FileNotFoundError(
                f'reference folder {path!r} does not exist; pass the folder that holds vectors_*.pt '
                '(e.g. ../shared/reference)')
        self.path = path
        self._vectors = None

    def file(self, kind: str) -> str:
        matches = sorted(glob.glob(osp.join(self.path, self.PATTERNS[kind])))
        if not matches:
            raise FileNotFoundError(
                f'no {self.PATTERNS[kind]} in reference folder {self.path!r}')
        return matches[0]

    @property
    def vectors(self) -> Dict:
        if self._vectors is None:
            from addp_mm.checkpoint import read_checkpoint
            self._vectors = dict(read_checkpoint(self.file('vectors'), 'reference vectors file'))
        return self._vectors

    @property
    def config(self) -> Dict:
        return self.vectors['config']


def call_capturing(module: torch.nn.Module, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` and the list of outputs ``module`` produced during the call."""
    captured = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        return fn(*args, **kwargs), captured
    finally:
        handle.remove()


CheckFn = Callable[[ReferenceDir], List[Row]]
_CHECKS: List[CheckFn] = []


def register_check(fn: CheckFn) -> CheckFn:
    """Decorator: ``fn(ref) -> list[Row]`` becomes part of :func:`run_checks`."""
    _CHECKS.append(fn)
    return fn


def run_checks(path: str, num_threads: Optional[int] = 1) -> List[Row]:
    """Run every registered check on the folder ``path``. A check that raises gives a FAIL row."""
    ref = ReferenceDir(path)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel('WARNING')  # rows only, no loading chatter
    if num_threads:
        torch.set_num_threads(num_threads)
    rows: List[Row] = []
    for fn in _CHECKS:
        try:
            with torch.no_grad():
                rows.extend(fn(ref))
        except Exception as e:  # report, keep going: one broken stage must not hide the others
            rows.append(Row(fn.__name__, '-', None, False, f'{type(e).__name__}: {e}'))
    return rows

