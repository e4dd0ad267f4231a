"""A distributed run's end: after ``close_process_group`` no thread of the process group is left
to the interpreter's exit (a gloo thread alive there aborted a finished rank now and then)."""
import ast
import os
import sys
import textwrap

from conftest import ROOT, free_port, run_command

# one gloo rank as torchrun starts it: a DDP step whose wrapper sits in a reference cycle (as in
# mmengine's runner), the wrapper dropped, the group closed; prints the threads before and after
SCRIPT = textwrap.dedent('''
    import os, torch
    import torch.distributed as dist
    from addp_mm.engine.runner_factory import close_process_group

    def threads():
        return sorted(open(f'/proc/self/task/{t}/comm').read().strip()
                      for t in os.listdir('/proc/self/task'))

    before = threads()
    dist.init_process_group('gloo')
    ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
    ddp(torch.randn(2, 4)).sum().backward()
    started = threads()
    holder = {'model': ddp}
    holder['self'] = holder
    del ddp, holder
    close_process_group()
    print('before', before)
    print('started', started)
    print('after', threads())
''')


def test_close_process_group_ends_the_groups_threads():
    env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), RANK='0',
               LOCAL_RANK='0', WORLD_SIZE='1', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
    out = run_command([sys.executable, '-c', SCRIPT], env=env).stdout
    lines = dict(line.split(' ', 1) for line in out.splitlines() if line.split(' ')[0] in
                 ('before', 'started', 'after'))
    before, started, after = (ast.literal_eval(lines[k]) for k in ('before', 'started', 'after'))
    assert any('gloo' in t for t in started), started  # the check sees gloo's threads
    assert after == before, f'left after close_process_group: {sorted(set(after) - set(before))}'
