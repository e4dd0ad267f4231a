"""What a checkpoint of our tools pickles besides tensors: exactly the allow-listed globals (exact
resume itself: tests/test_checkpoint_resume.py)."""
import numpy as np
import pytest
import torch


def _pickled_globals(path):
    import pickletools
    import zipfile
    with zipfile.ZipFile(path) as z:
        pickled = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    names, strings = [], []
    for op, arg, _ in pickletools.genops(pickled):
        if op.name == 'GLOBAL':  # protocol 2 writes builtins as __builtin__
            names.append(arg.replace(' ', '.').replace('__builtin__.', 'builtins.'))
        elif 'UNICODE' in op.name:
            strings.append(arg)
    return names, strings


def test_checkpoints_hold_only_allow_listed_globals(tmp_path):
    """What an mmengine checkpoint pickles besides tensors is exactly what we allow-list; the
    ``getattr`` it holds resolves only HistoryBuffer's own statistics."""
    from mmengine.logging import HistoryBuffer, MessageHub

    hub = MessageHub.get_instance('safe-globals-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(message_hub=hub.state_dict(), meta=dict(seed=np.int64(3), arr=np.zeros(2))), path)
    names, _ = _pickled_globals(path)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names and 'builtins.getattr' in names
    # nothing in it is outside torch's defaults plus our allow-list
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    loaded = torch.load(path, weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 1.0
    # the allow-listed ``getattr`` is not a blanket one: any other attribute is refused by name
    evil = tmp_path / 'evil.pth'
    torch.save(dict(x=_GetattrPayload()), evil)
    with pytest.raises(Exception, match=r"refused getattr\(HistoryBuffer, 'register_statistics'\)"):
        torch.load(evil, weights_only=True)
    assert HistoryBuffer.__getstate__.__module__.startswith('mmengine')  # mmengine left unpatched


class _GetattrPayload:
    """Pickles as ``getattr(HistoryBuffer, 'register_statistics')``, which must be refused."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return getattr, (HistoryBuffer, 'register_statistics')


def _weighted_mean(self, window_size=None):
    """A custom statistic another library registers (module level: pickled by reference)."""
    logs, counts = self.data
    return float((logs * counts).sum() / counts.sum())


def test_custom_history_buffer_statistics_survive_a_save(tmp_path):
    """``import addp_mm`` does not change how HistoryBuffer pickles: other code's registered
    statistics are saved with it and come back on a (trusted) load, as with plain mmengine."""
    import pickle

    from mmengine.logging import HistoryBuffer, MessageHub
    table = HistoryBuffer._statistics_methods
    if '_weighted_mean' not in table:
        HistoryBuffer.register_statistics(_weighted_mean)
    try:
        hub = MessageHub.get_instance('custom-statistics-test')
        hub.update_scalar('train/loss', 1.0, count=1)
        hub.update_scalar('train/loss', 4.0, count=3)
        path = tmp_path / 'hub.pth'
        torch.save(dict(message_hub=hub.state_dict()), path)
        blob = pickle.dumps(hub.state_dict())
        del table['_weighted_mean']  # as in a fresh process that has not imported that library
        buf = torch.load(path, weights_only=False)['message_hub']['log_scalars']['train/loss']
        assert buf.statistics('_weighted_mean') == pytest.approx(13 / 4)
        del table['_weighted_mean']
        buf = pickle.loads(blob)['log_scalars']['train/loss']
        assert buf.statistics('_weighted_mean') == pytest.approx(13 / 4)
        # a weights-only load refuses the foreign function by name (it never imports code)
        names, _ = _pickled_globals(path)
        assert f'{__name__}._weighted_mean' in names
        with pytest.raises(Exception, match='_weighted_mean'):
            torch.load(path, weights_only=True)
    finally:
        table.pop('_weighted_mean', None)
