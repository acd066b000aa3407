"""The `adamw-course` command refuses bad input up front, in one line on stderr with exit status 2.

Every refusal here must come before any data is read or any model is built: `run_study`, the finetune experiment and
the language-model study are replaced by stand-ins that fail the test if they are called, unless a test means them to
run (then they only record their arguments)."""
import ast, os, subprocess, sys, types
from pathlib import Path

import pytest
import torch

import adamw_course.cli as cli
from adamw_course.cli import main, make_parser

CPU = torch.device('cpu')
HAS_GPU = torch.cuda.is_available()


def _must_not_run(*args, **kw): raise AssertionError('the command started working before refusing its input')


@pytest.fixture
def no_work(monkeypatch):
    "Stand-ins for everything that reads data or trains: each fails the test if called."
    monkeypatch.setattr(cli, 'run_study', _must_not_run)
    for name, attr in (('adamw_course.finetune', 'reproduce_finetune'), ('adamw_course.text', 'run_lm_study')):
        mod = types.ModuleType(name); setattr(mod, attr, _must_not_run)
        monkeypatch.setitem(sys.modules, name, mod)


@pytest.fixture
def fake_finetune(monkeypatch):
    "A stand-in `adamw_course.finetune` whose `reproduce_finetune` records its arguments; returns the list of calls."
    calls = []
    def reproduce_finetune(**kw):
        calls.append(kw)
        return [dict(phase='frozen', epochs=1, accuracy=0.5, seconds=1.0, dataset='cifar10', arch='resnet18')]
    mod = types.ModuleType('adamw_course.finetune'); mod.reproduce_finetune = reproduce_finetune
    monkeypatch.setitem(sys.modules, 'adamw_course.finetune', mod)
    monkeypatch.setattr(cli, 'run_study', _must_not_run)
    return calls


def refused(argv, capsys) -> str:
    "Run `main(argv)`; it must exit with status 2 and one line on stderr, which is returned."
    capsys.readouterr()
    with pytest.raises(SystemExit) as e: main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, (e.value.code, err)
    assert err.count('\n') == 1 and err.endswith('\n'), f'not one line: {err!r}'
    assert 'Traceback' not in err
    return err


# --- image counts beyond what CIFAR-10 has -----------------------------------------------------------------------

@pytest.mark.parametrize('opt,value,split,most', [('--n-per-class', '5001', 'training', 5000),
                                                  ('--n-per-class', '100000', 'training', 5000),
                                                  ('--n-test-per-class', '1001', 'test', 1000)])
def test_image_counts_above_cifar10_refused(opt, value, split, most, tmp_path, capsys, no_work):
    out = tmp_path/'out'
    err = refused(['reproduce', opt, value, '--device', 'cpu', '--out', str(out)], capsys)
    assert err.startswith(f'adamw-course reproduce: error: argument {opt}: got {value}'), err
    assert f'CIFAR-10 has {most} {split} images per class: pass 1 to {most}' in err, err
    assert not out.exists()                                       # refused before anything was made


def test_image_counts_at_the_limits_accepted():
    a = make_parser().parse_args(['reproduce', '--n-per-class', '5000', '--n-test-per-class', '1000'])
    assert (a.n_per_class, a.n_test_per_class) == (5000, 1000)


@pytest.mark.parametrize('value,words', [('0', 'must be at least 1'), ('ten', 'expected a whole number')])
def test_image_counts_below_one_refused(value, words, capsys, no_work):
    assert words in refused(['reproduce', '--n-per-class', value], capsys)


def test_bad_count_refused_by_the_installed_command(tmp_path):
    "The same refusal from the command as a user runs it: a child process, its real stderr and exit status."
    out = tmp_path/'out'
    p = subprocess.run([sys.executable, '-m', 'adamw_course.cli', 'reproduce', '--n-per-class', '6000', '--out', str(out)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert p.returncode == 2, p
    assert p.stderr.count('\n') == 1, p.stderr
    assert 'argument --n-per-class: got 6000, but CIFAR-10 has 5000 training images per class' in p.stderr, p.stderr
    assert p.stdout == '' and not out.exists()


def test_argparse_errors_are_one_line(capsys, no_work):
    err = refused(['reproduce', 'mnist'], capsys)
    assert "invalid choice: 'mnist'" in err and '`adamw-course reproduce --help`' in err, err
    err = refused([], capsys)
    assert err.startswith('adamw-course: error:') and 'required' in err, err


# --- options a run does not use are refused, not ignored ---------------------------------------------------------

@pytest.mark.parametrize('argv,opt', [
    (['reproduce', 'finetune', '--runs', '3'], '--runs'),
    (['reproduce', 'finetune', '--n-per-class', '100'], '--n-per-class'),
    (['reproduce', 'finetune', '--n-test-per-class', '10'], '--n-test-per-class'),
    (['reproduce', 'finetune', '--jobs', '2'], '--jobs'),
    (['reproduce', 'finetune', '--max-minutes', '5'], '--max-minutes'),
    (['reproduce', 'cifar10', '--dataset', 'pets'], '--dataset'),
    (['study', 'lm', '--max-minutes', '5'], '--max-minutes'),
])
def test_unused_options_refused(argv, opt, tmp_path, capsys, no_work):
    out = tmp_path/'out'
    err = refused(argv + ['--device', 'cpu', '--out', str(out)], capsys)
    label = ' '.join(argv[:2])
    assert f'{opt} does not apply to `{label}`' in err and 'Leave it out.' in err, err
    assert not out.exists()


def test_every_unused_option_is_an_option():
    "`UNUSED_OPTIONS` names real destinations of the parser, so none of its refusals can be dead."
    commands = make_parser().commands
    dests = set(vars(commands['reproduce'].parse_args([]))) | set(vars(commands['study'].parse_args(['lm'])))
    for what, opts in cli.UNUSED_OPTIONS.items():
        assert set(opts) <= dests, (what, set(opts) - dests)


def test_default_jobs_is_not_refused_for_finetune(fake_finetune, tmp_path, capsys):
    "`--jobs 1` is what finetune does anyway, so it is accepted."
    assert main(['reproduce', 'finetune', '--jobs', '1', '--device', 'cpu', '--out', str(tmp_path)]) == 0
    assert len(fake_finetune) == 1


# --- every dataset of reproduce_finetune is reachable ------------------------------------------------------------

def test_finetune_datasets_reach_reproduce_finetune(fake_finetune, tmp_path, capsys):
    images = tmp_path/'cars'; images.mkdir()
    runs = [(['--epochs', '2'], dict(quick=True, epochs=2, data=None)),
            (['--dataset', 'cifar10'], dict(quick=True, epochs=None, data='cifar10')),
            (['--full', '--dataset', 'pets'], dict(quick=False, epochs=None, data='pets')),
            (['--dataset', 'flowers'], dict(quick=True, epochs=None, data='flowers')),
            (['--full', '--dataset', 'flowers'], dict(quick=False, epochs=None, data='flowers')),
            (['--full', '--dataset', 'cifar10'], dict(quick=False, epochs=None, data='cifar10')),
            (['--full'], dict(quick=False, epochs=None, data=None)),
            (['--data', str(images)], dict(quick=True, epochs=None, data=str(images))),
            (['--full', '--data', str(images)], dict(quick=False, epochs=None, data=str(images)))]
    for i, (extra, want) in enumerate(runs):
        out = tmp_path/f'out{i}'
        assert main(['reproduce', 'finetune', *extra, '--device', 'cpu', '--out', str(out)]) == 0
        assert fake_finetune[-1] == dict(want, device=CPU, out=out/'finetune'), extra
    assert '| frozen | 1 | 50.00% |' in capsys.readouterr().out
    assert set(cli.FINETUNE_DATASETS) == {'cifar10', 'pets', 'flowers'}      # lesson 09's names, all reachable
    assert 'pets' in make_parser().commands['reproduce'].format_help()


@pytest.mark.parametrize('extra,words', [
    (['--dataset', 'cifar10', '--data', '.'], '--dataset and --data both choose the images'),
    (['--data', 'torchvision'], '--data torchvision: no such folder'),
    (['--dataset', 'cars'], "invalid choice: 'cars'"),
])
def test_finetune_dataset_mistakes_refused(extra, words, tmp_path, capsys, no_work):
    err = refused(['reproduce', 'finetune', *extra, '--device', 'cpu', '--out', str(tmp_path/'out')], capsys)
    assert words in err, err


def test_finetune_data_must_be_a_folder(tmp_path, capsys, no_work):
    tgz = tmp_path/'cifar10.tgz'; tgz.write_bytes(b'')
    err = refused(['reproduce', 'finetune', '--data', str(tgz), '--device', 'cpu', '--out', str(tmp_path/'out')], capsys)
    assert 'no such folder' in err and 'train/ and valid/' in err, err


def test_finetune_keeps_an_earlier_csv_unless_overwrite(fake_finetune, tmp_path, capsys):
    csv = tmp_path/'finetune'/'finetune.csv'; csv.parent.mkdir(); csv.write_text('earlier')
    err = refused(['reproduce', 'finetune', '--device', 'cpu', '--out', str(tmp_path)], capsys)
    assert 'holds the results of an earlier finetune run' in err and '--overwrite' in err, err
    assert fake_finetune == [] and csv.read_text() == 'earlier'
    assert main(['reproduce', 'finetune', '--device', 'cpu', '--out', str(tmp_path), '--overwrite']) == 0
    assert len(fake_finetune) == 1


def test_finetune_interrupted_exits_130(monkeypatch, tmp_path, capsys):
    def interrupted(**kw): raise KeyboardInterrupt
    mod = types.ModuleType('adamw_course.finetune'); mod.reproduce_finetune = interrupted
    monkeypatch.setitem(sys.modules, 'adamw_course.finetune', mod)
    with pytest.raises(SystemExit) as e: main(['reproduce', 'finetune', '--device', 'cpu', '--out', str(tmp_path)])
    assert e.value.code == 130
    assert 'Interrupted' in capsys.readouterr().err


# --- imports inside finetune -------------------------------------------------------------------------------------

def test_missing_dependency_is_named(monkeypatch, tmp_path, capsys):
    "The real module, on a machine without torchvision: the message names it, and says nothing of 'not available yet'."
    monkeypatch.delitem(sys.modules, 'adamw_course.finetune', raising=False)
    monkeypatch.setitem(sys.modules, 'torchvision', None)
    err = refused(['reproduce', 'finetune', '--device', 'cpu', '--out', str(tmp_path)], capsys)
    assert "needs the Python module 'torchvision'" in err and 'install' in err, err
    assert 'not available' not in err


class _Broken:
    "A meta path finder that fails the import of one module with an ImportError that is not a missing module."
    def __init__(self, name): self.name = name
    def find_spec(self, name, path=None, target=None):
        if name == self.name: raise ImportError(f"cannot import name 'thing' from {name!r}")
        return None


def test_other_import_errors_surface_as_themselves(monkeypatch, tmp_path, capsys):
    monkeypatch.delitem(sys.modules, 'adamw_course.finetune', raising=False)
    monkeypatch.setattr(sys, 'meta_path', [_Broken('adamw_course.finetune'), *sys.meta_path])
    with pytest.raises(ImportError, match="cannot import name 'thing'"):
        main(['reproduce', 'finetune', '--device', 'cpu', '--out', str(tmp_path)])
    assert 'not available' not in capsys.readouterr().err


def test_missing_adamw_course_module_keeps_its_traceback(monkeypatch, tmp_path):
    "A missing module of adamw_course itself is a broken install, not a dependency to install: it is raised as is."
    monkeypatch.setitem(sys.modules, 'adamw_course.finetune', None)
    with pytest.raises(ModuleNotFoundError):
        main(['reproduce', 'finetune', '--device', 'cpu', '--out', str(tmp_path)])


# --- no private argparse state -----------------------------------------------------------------------------------

def test_no_private_attributes_in_cli():
    "cli.py reads no `_private` attribute of anything (argparse's `_subparsers`, `_actions`, ...): only public API."
    tree = ast.parse(Path(cli.__file__).read_text())
    private = [(n.lineno, n.attr) for n in ast.walk(tree) if isinstance(n, ast.Attribute)
               and n.attr.startswith('_') and not (n.attr.startswith('__') and n.attr.endswith('__'))]
    assert private == [], private


def test_parser_keeps_its_subcommands():
    p = make_parser()
    assert {k: c.prog for k, c in p.commands.items()} == {'reproduce': 'adamw-course reproduce', 'study': 'adamw-course study'}
    assert p.commands['reproduce'].parse_args(['finetune', '--full']).full is True


# --- study lm: --data and --device reach the study ---------------------------------------------------------------

def test_study_lm_gets_data_and_device(monkeypatch, tmp_path, capsys):
    calls = []
    def run_lm_study(root, **kw):
        calls.append(kw)
        (Path(root)/'lm').mkdir(parents=True, exist_ok=True); (Path(root)/'lm'/'summary.md').write_text('| lm |\n')
    mod = types.ModuleType('adamw_course.text'); mod.run_lm_study = run_lm_study
    monkeypatch.setitem(sys.modules, 'adamw_course.text', mod)
    wt2 = tmp_path/'wikitext-2'; wt2.mkdir()
    assert main(['study', 'lm', '--size', 'tiny', '--data', str(wt2), '--device', 'cpu', '--out', str(tmp_path)]) == 0
    assert calls == [dict(size='tiny', jobs=1, overwrite=False, source=str(wt2), device=CPU)]
    err = refused(['study', 'lm', '--data', str(tmp_path/'nowhere'), '--out', str(tmp_path)], capsys)
    assert 'WikiText-2 folder' in err, err


@pytest.mark.skipif(HAS_GPU, reason='checks the refusal on a machine without a GPU')
def test_full_finetune_without_gpu_refused(capsys, tmp_path, no_work):
    err = refused(['reproduce', 'finetune', '--full', '--out', str(tmp_path)], capsys)
    assert 'the full size needs a GPU' in err and 'WRN-22' not in err, err
