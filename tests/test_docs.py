"""The pages stay true to the repository: every relative link and every file path they name
exists, every config they name builds, and every command they show parses with its tool's own
options (the commands that run on demo data are run as written by test_readme_commands.py, the
paste-in blocks by test_configs.py)."""
import glob
import os.path as osp
import re
import shlex

import pytest
from conftest import tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = sorted([osp.join(ROOT, 'README.md')] + glob.glob(osp.join(ROOT, 'docs', '**', '*.md'),
                                                        recursive=True)
               + glob.glob(osp.join(ROOT, 'configs', '*', 'README.md')))
# files the pages name that a user makes or downloads (not part of the repository)
MADE_BY_USER = ('work_dirs/', 'data/', 'checkpoints/', '../shared/', 'docs/benchmarks/')
PATH = re.compile(r'(?<![\w/.-])((?:configs|tools|docs|addp_mm|tests)/[\w./{},*-]+\w)')
LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')


def page_id(path):
    return osp.relpath(path, ROOT)


def test_the_pages_exist_and_the_readme_is_short():
    names = {page_id(p) for p in PAGES}
    for page in ('docs/get_started.md', 'docs/data_preparation.md',
                 'docs/user_guides/train_test.md', 'docs/user_guides/own_config.md',
                 'docs/user_guides/pretrain_and_generate.md', 'docs/user_guides/train_every_part.md',
                 'docs/user_guides/weights.md', 'docs/user_guides/inference.md',
                 'docs/user_guides/generate_and_edit.md',
                 'docs/advanced_guides/architecture.md',
                 'docs/advanced_guides/reliability.md', 'docs/advanced_guides/performance.md'):
        assert page in names, page
    assert len(open(osp.join(ROOT, 'README.md')).read().splitlines()) < 200


@pytest.mark.parametrize('page', PAGES, ids=page_id)
def test_links_and_paths_resolve(page):
    text = open(page, encoding='utf-8').read()
    here = osp.dirname(page)
    missing = []
    for target in LINK.findall(text):
        if target.startswith(('http://', 'https://', 'mailto:')):
            continue
        if not osp.exists(osp.normpath(osp.join(here, target))):
            missing.append(f'link {target}')
    for path in PATH.findall(text):
        if path.startswith(MADE_BY_USER) or '*' in path or '{' in path or '...' in path:
            continue
        if not osp.exists(osp.join(ROOT, path)):
            missing.append(f'path {path}')
    assert not missing, missing


def named_configs():
    found = set()
    for page in PAGES:
        for path in PATH.findall(open(page, encoding='utf-8').read()):
            if path.startswith('configs/') and path.endswith('.py'):
                found.add(path)
    return sorted(found)


def test_every_named_config_builds():
    from mmengine.config import Config
    configs = named_configs()
    assert len(configs) >= 15, configs
    for path in configs:
        cfg = Config.fromfile(osp.join(ROOT, path))
        assert '/_base_/' in path or 'model' in cfg, path


def shown_commands():
    """``(page, argv)`` of every ``python tools/X.py ...`` and ``tools/*.sh`` line of the pages'
    bash blocks (continuations joined, comments dropped)."""
    for page in PAGES:
        text = open(page, encoding='utf-8').read()
        for block in re.findall(r'```bash\n(.*?)```', text, re.S):
            for line in block.replace('\\\n', ' ').splitlines():
                line = line.split(' #')[0].strip()
                if line.startswith('#') or not line:
                    continue
                argv = shlex.split(line.split('|')[0])
                while argv and '=' in argv[0] and not argv[0].startswith('-'):  # VAR=value prefixes
                    argv = argv[1:]
                yield page_id(page), argv


def test_every_shown_command_parses_with_its_tool():
    seen = 0
    for page, argv in shown_commands():
        if argv[:2] == ['python', '-m'] or argv[0] in ('bash', 'ln', 'mkdir', 'pip', 'mim'):
            continue
        if argv[0] == 'python' and argv[1].startswith('tools/'):
            # tools/X.py -> X, tools/deploy/export.py -> deploy.export
            name, args = osp.splitext(argv[1][len('tools/'):])[0].replace('/', '.'), argv[2:]
        elif argv[0].startswith('tools/') and argv[0].endswith('.sh'):
            name = {'dist_train.sh': 'train', 'dist_test.sh': 'test'}.get(osp.basename(argv[0]))
            if name is None:
                continue
            n_pos = 1 if name == 'train' else 2
            args = argv[1:1 + n_pos] + argv[2 + n_pos:]  # without NUM_PROCS
        else:
            raise AssertionError(f'{page}: a command no test reads: {argv}')
        module = tool(name)
        try:
            module.parse_args(args)
        except SystemExit as e:
            raise AssertionError(f'{page}: {" ".join(argv)} does not parse') from e
        for arg in args:
            if arg.startswith('configs/') and arg.endswith('.py'):
                assert osp.isfile(osp.join(ROOT, arg)), (page, arg)
        seen += 1
    assert seen >= 20, seen
