"""A distributed run's end: after ``close_process_group`` no thread of the process group is left
to the interpreter's exit (a gloo thread alive there aborted a finished rank now and then)."""
import os

import torch
import torch.distributed as dist
from conftest import free_port

from addp_mm.engine.runner_factory import close_process_group


def threads():
    """The names of this process's threads that a gloo group runs (gloo's own and the store's)."""
    names = (open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task'))
    return sorted(n for n in names if 'gloo' in n or 'tcpstore' in n)


def test_close_process_group_ends_the_groups_threads(monkeypatch):
    """One gloo rank as torchrun starts it, in this process: a DDP step whose wrapper sits in a
    reference cycle (as in mmengine's runner), the wrapper dropped, the group closed."""
    for key, value in dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), RANK='0',
                           LOCAL_RANK='0', WORLD_SIZE='1').items():
        monkeypatch.setenv(key, value)
    before = threads()
    dist.init_process_group('gloo')
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
        ddp(torch.randn(2, 4)).sum().backward()
        # gloo names its threads from inside them: listed after the step, they carry their names
        started = threads()
        holder = {'model': ddp}
        holder['self'] = holder
        del ddp, holder
    finally:
        close_process_group()
    after = threads()
    assert len(started) > len(before), started  # the check sees the group's threads
    assert not dist.is_initialized()
    assert after == before, f'left after close_process_group: {after} (before: {before})'
