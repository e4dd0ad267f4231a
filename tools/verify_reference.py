"""Recompute the outputs recorded by the released ADDP implementation and compare.

    python tools/verify_reference.py ../shared/reference [--threads 1]

DIR is a folder laid out like shared/reference (any variant name). One row per output, starting
with its key in the vectors file, then shape, max abs error, PASS/FAIL. Exits 1 on any failure.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/cli.py
from cli import ROOT, UsageError, add_debug_flag, before_heavy_imports, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('dir', help='reference folder (vectors_*.pt + release-format checkpoints)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (the reference used 1)')
    add_debug_flag(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isdir(args.dir):
        raise UsageError(f"reference folder '{args.dir}' not found (looked in {os.getcwd()})")
    before_heavy_imports(threads=False)
    sys.path.insert(0, ROOT)  # run from a checkout
    import addp_mm  # noqa: F401
    from verification import run_checks  # tools/verification
    rows = run_checks(args.dir, num_threads=args.threads)
    print(f'{"key":<28} {"shape":<22} {"max_abs_err":>10}  result')
    for row in rows:
        print(row.format())
    failed = [r for r in rows if not r.passed]
    print(f'{len(rows) - len(failed)} passed, {len(failed)} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    run_tool(main)
