"""The restricted unpickler (``addp_mm.compat.restricted_pickle_module``): what ``read_checkpoint``
loads every checkpoint with on torch < 2.4, the only thing between a crafted file and code
execution on the torch 2.1 stack.

- Classic payloads, one by one, each inside a real checkpoint file: refused with our error
  (:class:`UnsafeCheckpointError` naming the global) and never run (the payload would write a
  marker file; it does when the file is trusted, so each payload is live).
- Every global of a corpus of real checkpoints (files made here as our code and mmengine's runner
  write them, the released layouts in ``ADDP_REFERENCE_DIR``) and of the payloads: our unpickler
  decides as torch's own weights-only unpickler with our allow-list does (torch >= 2.4, run here
  side by side), and as :data:`DECISIONS`, the table recorded from torch 2.14.1's weights-only
  unpickler, says (the only reference torch 2.1 has: it has no allow-list to extend).

Run on the torch 2.1 stack by ``bash tools/check_torch21.sh``.
"""
import argparse
import io
import os
import os.path as osp
import pickle
import pickletools
import struct
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn

from addp_mm.checkpoint import TRUSTED_ENV, UnsafeCheckpointError, read_checkpoint
from addp_mm.checkpoint.safe_globals import register_safe_globals, safe_globals
from addp_mm.compat import HAS_SAFE_GLOBALS, restricted_pickle_module

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
REFERENCE = os.environ.get('ADDP_REFERENCE_DIR', osp.join(ROOT, '..', 'shared', 'reference'))
RELEASED = ('official_addp_public.pth', 'official_finetune_public.pth',
            'mage_token_predictor_public.pth', 'vqgan_public.ckpt', 'vectors_public.pt')


# ------------------------------------------------------------------ protocol-2 pickles by hand
def _global(module, name):
    """``GLOBAL module name``: the exact spelling a file can use (``__builtin__``, ``copy_reg``)."""
    return b'c' + f'{module}\n{name}\n'.encode()


def _str(text):
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def _call(func, *args):
    """``func(*args)``: MARK, the arguments, TUPLE, REDUCE."""
    return func + b'(' + b''.join(args) + b'tR'


def _list(*items):
    return b']' + b'(' + b''.join(items) + b'e'


def _getattr(owner, name, spelling='builtins'):
    return _call(_global(spelling, 'getattr'), owner, _str(name))


def _payloads(marker):
    """name -> pickle body that writes ``marker`` when unpickled in full."""
    m = str(marker)
    touch = _str(f'touch {m}')
    write = _str(f'open({m!r}, "w").close()')
    import_os = _call(_global('builtins', '__import__'), _str('os'))
    # Namespace.__init__.__globals__.get('_os').system('touch ...'): argparse's own os
    argparse_os = _call(_getattr(_getattr(_getattr(_global('argparse', 'Namespace'), '__init__'),
                                          '__globals__'), 'get'), _str('_os'))
    return {
        'builtins.exec': _call(_global('builtins', 'exec'), write),
        'builtins.eval': _call(_global('builtins', 'eval'), write),
        'builtins.open': _call(_global('builtins', 'open'), _str(m), _str('w')),
        'builtins.__import__ -> os.system': _call(_getattr(import_os, 'system'), touch),
        'builtins.getattr chain from an allowed class': _call(_getattr(argparse_os, 'system'),
                                                              touch),
        'os.system': _call(_global('os', 'system'), touch),
        'posix.system': _call(_global('posix', 'system'), touch),
        'os.popen': _call(_getattr(_call(_global('os', 'popen'), touch), 'close')),
        'subprocess.check_call': _call(_global('subprocess', 'check_call'),
                                       _list(_str('touch'), _str(m))),
        'subprocess.Popen': _call(_call(_getattr(_call(_global('subprocess', 'Popen'), _list(
            _str('touch'), _str(m))), 'wait'))),
        '__builtin__.eval (protocol 2)': _call(_global('__builtin__', 'eval'), write),
        '__builtin__.getattr chain (protocol 2)': _call(
            _getattr(argparse_os, 'system', '__builtin__'), touch),
        'copy_reg._reconstructor (protocol 2)': _call(
            _global('copy_reg', '_reconstructor'), _global('logging', 'FileHandler'),
            _global('logging', 'FileHandler'), _str(m)),
        'a tensor rebuilder handed os.system': _call(
            _global('torch._tensor', '_rebuild_from_type_v2'), _global('posix', 'system'),
            _global('torch', 'Tensor'), b'(' + touch + b't', b'}'),
        'an OrderedDict holding a reduce of a reduce': _call(
            _global('collections', 'OrderedDict'), _list(b'(' + _str('k') + _call(
                _global('posix', 'system'), _call(_global('builtins', 'str'), touch)) + b't')),
        'torch.save': _call(_global('torch', 'save'), _str('x'), _str(m)),
        'torch.serialization.save': _call(_global('torch.serialization', 'save'), _str('x'),
                                          _str(m)),
        'torch._utils._import_dotted_name -> os.system': _call(
            _call(_global('torch._utils', '_import_dotted_name'), _str('os.system')), touch),
        # torch.load(INNER, None, pickle): a second crafted file, unpickled in full
        'torch.load of another crafted file': _call(
            _global('torch', 'load'), _str(f'{m}.inner.pth'), b'N',
            _call(_global('torch._utils', '_import_dotted_name'), _str('pickle'))),
        'numpy.save': _call(_global('numpy', 'save'), _str(m), _str('x')),
    }


# the global each payload is refused at (the first one our allow-list does not hold)
REFUSED_AT = {
    'builtins.exec': 'builtins.exec', 'builtins.eval': 'builtins.eval',
    'builtins.open': 'builtins.open', 'builtins.__import__ -> os.system': 'builtins.__import__',
    'builtins.getattr chain from an allowed class': "getattr(Namespace, '__init__')",
    'os.system': 'os.system', 'posix.system': 'posix.system', 'os.popen': 'os.popen',
    'subprocess.check_call': 'subprocess.check_call', 'subprocess.Popen': 'subprocess.Popen',
    '__builtin__.eval (protocol 2)': 'builtins.eval',
    '__builtin__.getattr chain (protocol 2)': "getattr(Namespace, '__init__')",
    'copy_reg._reconstructor (protocol 2)': 'copyreg._reconstructor',
    'a tensor rebuilder handed os.system': 'posix.system',
    'an OrderedDict holding a reduce of a reduce': 'posix.system',
    'torch.save': 'torch.save', 'torch.serialization.save': 'torch.serialization.save',
    'torch._utils._import_dotted_name -> os.system': 'torch._utils._import_dotted_name',
    'torch.load of another crafted file': 'torch.load', 'numpy.save': 'numpy.save',
}


def _edit_pickle(src, path, edit):
    """The checkpoint file ``src`` (bytes) with its pickle edited by ``edit(data)``, as ``path``."""
    src = zipfile.ZipFile(io.BytesIO(src))
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, edit(data) if info.filename.endswith('/data.pkl') else data)
    return str(path)


def _with_pickle(path, body):
    """A real checkpoint (zip, as ``torch.save`` writes it) whose ``meta`` holds ``body``."""
    buf = io.BytesIO()
    torch.save({'state_dict': {'w': torch.arange(3.)}, 'meta': 'PAYLOAD'}, buf)

    def insert(data):
        assert _str('PAYLOAD') in data
        return data.replace(_str('PAYLOAD'), body)
    return _edit_pickle(buf.getvalue(), path, insert)


@pytest.fixture
def restricted_path(monkeypatch):
    """read_checkpoint as on torch < 2.4 (there it is so already), no file trusted."""
    monkeypatch.setattr('addp_mm.checkpoint.io.HAS_SAFE_GLOBALS', False)
    monkeypatch.delenv(TRUSTED_ENV, raising=False)


@pytest.mark.parametrize('payload', list(REFUSED_AT))
def test_payload_is_refused_and_never_runs(payload, tmp_path, restricted_path, monkeypatch):
    marker = tmp_path / 'marker'
    evil = _with_pickle(tmp_path / 'evil.pth', _payloads(marker)[payload])
    _with_pickle(f'{marker}.inner.pth', _payloads(marker)['posix.system'])
    with pytest.raises(UnsafeCheckpointError) as e:
        read_checkpoint(evil)
    assert not marker.exists(), f'{payload} ran'
    message = str(e.value)
    assert REFUSED_AT[payload] in message and TRUSTED_ENV in message, message
    if HAS_SAFE_GLOBALS:  # torch's own weights-only load refuses it too, and runs nothing
        register_safe_globals()
        with pytest.raises(pickle.UnpicklingError):
            torch.load(evil, weights_only=True)
        assert not marker.exists()
    # live: trusted (unpickled in full) the same file writes the marker
    monkeypatch.setenv(TRUSTED_ENV, evil)
    try:
        read_checkpoint(evil)
    except Exception:  # some payloads fail after they ran (their results are no checkpoint)
        pass
    assert marker.exists() or osp.exists(f'{marker}.npy'), f'{payload} is no live payload'


# ------------------------------------------------------------------ the corpus and the decisions
class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


def _runner_checkpoint(work_dir):
    """What mmengine's runner writes at a checkpoint: meta, state_dict, AdamW's states, the
    schedulers' and the message hub's (HistoryBuffers of numpy arrays, runtime info)."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.toy = _Toy()

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return self.toy(inputs, data_samples, mode)

    def managed(cls):  # DefaultScope, MessageHub, MMLogger, Visualizer, ...
        return [cls] + [c for sub in cls.__subclasses__() for c in managed(sub)]
    from mmengine.utils import ManagerMixin
    before = {cls: set(cls._instance_dict) for cls in managed(ManagerMixin)}
    try:
        _train(Runner, Toy(), work_dir)
    finally:  # the runner's scope, logger, hub stay current in the process: forget them
        for cls in managed(ManagerMixin):
            for name in set(cls._instance_dict) - before.get(cls, set()):
                del cls._instance_dict[name]
    path = osp.join(work_dir, 'iter_2.pth')
    assert {'meta', 'state_dict', 'optimizer', 'param_schedulers', 'message_hub'} <= set(torch.load(
        path, weights_only=False))
    return path


def _train(Runner, model, work_dir):
    runner = Runner(
        model=model, work_dir=str(work_dir), experiment_name='corpus',
        train_dataloader=dict(dataset=[dict(inputs=torch.randn(2)) for _ in range(4)],
                              sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2,
                              num_workers=0, collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=1),
                         dict(type='CosineAnnealingLR', by_epoch=False, begin=1, T_max=1)],
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
                           logger=dict(type='LoggerHook', interval=1)),
        log_level='WARNING', default_scope='mmengine')
    runner.train()


def _ours(path):
    """A checkpoint as our code and tests write them: a state dict with the run's arguments,
    a message hub buffer, numpy arrays and scalars in ``meta``."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save(dict(
        state_dict={'w': torch.arange(4.), 'i': torch.arange(2),
                    'b': torch.ones(2, dtype=torch.bool), 'h': torch.ones(2, dtype=torch.float16)},
        meta=dict(args=argparse.Namespace(lr=0.1), hub=buf, arr=np.arange(3, dtype=np.float32),
                  f64=np.float64(2.5), i64=np.int64(3), f32=np.float32(1.), mask=np.array([True]))),
        path)
    return str(path)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """name -> checkpoint file."""
    tmp = tmp_path_factory.mktemp('corpus')
    files = {'ours': _ours(tmp / 'ours.pth'), 'mmengine runner': _runner_checkpoint(tmp / 'work')}
    # as the other numpy writes them: numpy 1 (the torch 2.1 stack) spells numpy.core.multiarray,
    # numpy 2 numpy._core.multiarray
    for name in ('ours', 'mmengine runner'):
        with open(files[name], 'rb') as f:
            files[f'{name}, the other numpy'] = _edit_pickle(
                f.read(), tmp / f'{name} other numpy.pth',
                lambda data: data.replace(b'numpy.core.multiarray', b'NUMPY-CORE').replace(
                    b'numpy._core.multiarray', b'numpy.core.multiarray').replace(
                    b'NUMPY-CORE', b'numpy._core.multiarray'))
    for name in RELEASED:
        if osp.exists(osp.join(REFERENCE, name)):
            files[name] = osp.join(REFERENCE, name)
    return files


def pickled_globals(path):
    """Every ``GLOBAL module name`` in a checkpoint's pickle, as spelled in the file."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith('/data.pkl')))
    found = set()
    for op, arg, _ in pickletools.genops(data):
        assert op.name != 'STACK_GLOBAL', 'torch.save writes protocol 2 (GLOBAL)'
        if op.name == 'GLOBAL':
            found.add(arg)
    return found


def _payload_globals():
    found = set()
    for body in _payloads('/nonexistent/marker').values():
        found |= {arg for op, arg, _ in pickletools.genops(b'\x80\x02' + body + b'.')
                  if op.name == 'GLOBAL'}
    return found


def _probe(spelling):
    """A pickle that is one global: ``GLOBAL module name``, STOP."""
    module, name = spelling.split(' ')
    return b'\x80\x02' + _global(module, name) + b'.'


def ours_decides(spelling):
    module = restricted_pickle_module(safe_globals())
    try:
        return True, module.Unpickler(io.BytesIO(_probe(spelling))).load()
    except pickle.UnpicklingError:
        return False, None


def torch_decides(spelling):
    """torch's own weights-only unpickler (what ``torch.load(weights_only=True)`` runs), with our
    allow-list added to torch's as ``read_checkpoint`` adds it."""
    from torch import _weights_only_unpickler
    register_safe_globals()
    try:
        unpickler = _weights_only_unpickler.Unpickler(io.BytesIO(_probe(spelling)),
                                                      encoding='ASCII')
        return True, unpickler.load()
    except pickle.UnpicklingError:
        return False, None


# GLOBAL (as spelled in the file) -> allowed, recorded from torch 2.14.1's weights-only unpickler
# with our allow-list (numpy 2.4.6): every global of the corpus and of the payloads
DECISIONS = {
    '__builtin__ eval': False,
    '__builtin__ getattr': True,
    '_codecs encode': True,
    'argparse Namespace': True,
    'builtins __import__': False,
    'builtins eval': False,
    'builtins exec': False,
    'builtins getattr': True,
    'builtins open': False,
    'builtins str': False,
    'collections OrderedDict': True,
    'copy_reg _reconstructor': False,
    'logging FileHandler': False,
    'mmengine.logging.history_buffer HistoryBuffer': True,
    'numpy dtype': True,
    'numpy ndarray': True,
    'numpy save': False,
    'numpy.core.multiarray _reconstruct': True,
    'numpy.core.multiarray scalar': True,
    'numpy._core.multiarray _reconstruct': True,
    'numpy._core.multiarray scalar': True,
    'numpy.dtypes BoolDType': True,
    'numpy.dtypes Float32DType': True,
    'numpy.dtypes Float64DType': True,
    'numpy.dtypes Int64DType': True,
    'os popen': False,
    'os system': False,
    'posix system': False,
    'subprocess Popen': False,
    'subprocess check_call': False,
    'torch BoolStorage': True,
    'torch DoubleStorage': True,
    'torch FloatStorage': True,
    'torch HalfStorage': True,
    'torch LongStorage': True,
    'torch Tensor': True,
    'torch save': False,
    'torch._tensor _rebuild_from_type_v2': True,
    'torch._utils _import_dotted_name': False,
    'torch._utils _rebuild_tensor_v2': True,
    'torch load': False,
    'torch.serialization save': False,
}


def test_our_unpickler_decides_every_global_as_torchs_weights_only_loader(corpus):
    seen = {name: pickled_globals(path) for name, path in corpus.items()}
    everything = set().union(*seen.values()) | _payload_globals()
    ours = {g: ours_decides(g) for g in sorted(everything)}
    assert not set(everything) - set(DECISIONS), (
        f'globals the recorded table lacks (record their decision on the pinned torch): '
        f'{ {g: ours[g][0] for g in sorted(set(everything) - set(DECISIONS))} }')
    if HAS_SAFE_GLOBALS:
        theirs = {g: torch_decides(g) for g in sorted(everything | set(DECISIONS))}
        live = {g: allowed for g, (allowed, _) in theirs.items()}
        assert live == DECISIONS, f'torch decides otherwise now; re-record: {live}'
        for g, (allowed, obj) in ours.items():  # and resolve the same object
            assert obj is theirs[g][1], g
    assert {g: allowed for g, (allowed, _) in ours.items()} == {g: DECISIONS[g] for g in ours}
    # every checkpoint's globals are allowed: the corpus loads through both loaders alike
    for name, found in seen.items():
        assert all(DECISIONS[g] for g in found), (name, [g for g in found if not DECISIONS[g]])
    assert 'mmengine.logging.history_buffer HistoryBuffer' in seen['mmengine runner']
    assert '__builtin__ getattr' in seen['mmengine runner']  # HistoryBuffer's statistics


def test_the_corpus_loads_alike_through_both_loaders(corpus, monkeypatch):
    """The whole files, not just their globals: our unpickler (``read_checkpoint`` as on
    torch < 2.4) gives what torch's weights-only load with our allow-list gives."""
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    for name, path in corpus.items():
        monkeypatch.setattr('addp_mm.checkpoint.io.HAS_SAFE_GLOBALS', False)
        ours = read_checkpoint(path)
        if HAS_SAFE_GLOBALS:
            register_safe_globals()
            _assert_same(ours, torch.load(path, map_location='cpu', weights_only=True), name)
    hub = read_checkpoint(corpus['mmengine runner'])['message_hub']['log_scalars']
    assert hub['train/loss'].mean() > 0  # HistoryBuffer with its statistics methods


def _assert_same(a, b, where):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f'{where}[{i}]')
    elif hasattr(a, '__dict__'):
        _assert_same(vars(a), vars(b), where)
    else:
        assert a == b, where
