"""Reliability of the `adamw-course` command and of the data loading: nothing lost, nothing silently wrong.

Each row of `CASES` is one bad input: the command line, the exit status it must end with, a fragment its one-line
message must hold (and one it must not), and the files that must be unchanged afterwards. In every row no model is
trained (`train_run` is replaced by a stand-in that fails the test) and no run record is written. The signal tests run
the command in a child process and interrupt it for real; the cache tests damage the decoded cache in place.

The data are tiny ImageFolder trees and archives made in a temporary folder (20 training and 10 test images per
class), never the real CIFAR-10 copy and never the network: downloads are replaced by stand-ins that fail as an
offline machine does."""
import io, json, os, shutil, signal, subprocess, sys, tarfile, time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

import adamw_course.data as data
import adamw_course.experiments as experiments
from adamw_course.cli import main
from adamw_course.data import CIFAR10_CLASSES, DataError, DownloadError, load_cifar10

ROOT = os.geteuid() == 0 if hasattr(os, 'geteuid') else False


# --- tiny data ---------------------------------------------------------------------------------------------------

def make_tree(root: Path, n_train: int = 20, n_test: int = 10, classes=CIFAR10_CLASSES, ext: str = '.png') -> Path:
    "An ImageFolder tree `root/cifar10/{train,test}/<class>/NNNN.png` of random 32x32 images; returns `root`."
    g = torch.Generator().manual_seed(0)
    for split, n in (('train', n_train), ('test', n_test)):
        for c in classes:
            d = root/'cifar10'/split/c; d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
                (d/f'{i:04d}{ext}').write_bytes((encode_png(img) if ext == '.png' else encode_jpeg(img)).numpy().tobytes())
    return root


def make_tgz(tree: Path, tgz: Path) -> Path:
    with tarfile.open(tgz, 'w:gz') as tf: tf.add(tree/'cifar10', arcname='cifar10')
    return tgz


@pytest.fixture(scope='session')
def sources(tmp_path_factory) -> dict[str, Path]:
    "Every data source the cases read, good and bad, made once: name -> path."
    d = tmp_path_factory.mktemp('sources')
    s = {'tree': make_tree(d/'tree')}
    s['tgz'] = make_tgz(s['tree'], d/'tiny.tgz')
    s['small'] = make_tree(d/'small', n_train=2, n_test=2)                             # fewer images than --size tiny reads
    s['empty'] = d/'empty'; s['empty'].mkdir()
    s['flat'] = d/'flat'                                                              # class folders, no train/ or test/
    for c in CIFAR10_CLASSES: shutil.copytree(s['tree']/'cifar10'/'train'/c, s['flat']/c)
    s['nocat'] = make_tree(d/'nocat', n_train=20, n_test=10, classes=[c for c in CIFAR10_CLASSES if c != 'cat'])
    s['text'] = d/'notes.tgz'; s['text'].write_text('these are my notes, not an archive\n')
    blob = s['tgz'].read_bytes()
    s['cut'] = d/'cut.tgz'; s['cut'].write_bytes(blob[:len(blob) // 2])              # a copy stopped halfway
    s['jpeg'] = make_tree(d/'jpeg', ext='.jpg')
    bad = s['jpeg']/'cifar10'/'train'/'dog'/'0003.jpg'
    bad.write_bytes(bad.read_bytes()[:40])                                             # a JPEG cut after its header
    s['bad_jpeg_file'] = bad
    return s


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    "A fresh cache folder and working folder, no offline copy configured, and no training allowed."
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)                                  # find_cifar10 walks up from here: no shared/ copy above
    def must_not_train(*a, **kw): raise AssertionError('a model was trained before the bad input was refused')
    monkeypatch.setattr(experiments, 'train_run', must_not_train)
    monkeypatch.setattr(experiments, '_DLS', {})
    return tmp_path


class OfflineCIFAR10:
    "torchvision's CIFAR10 on a machine without network."
    def __init__(self, *a, **kw): raise URLError('[Errno -2] Name or service not known')


def offline_pets(*a, **kw): raise URLError('[Errno -2] Name or service not known')


# --- the table ---------------------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    argv: list                        # '{name}' is replaced by the path of `sources[name]`, '{out}' by the output folder
    fragment: str                     # must be in the one-line message ('{name}' as above)
    code: int = 2
    absent: tuple = ()                # must not be in the message
    setup: object = None              # a function(tmp_path, monkeypatch) -> the --out path, for cases about --out
    unchanged: tuple = ()             # sources whose files must be byte for byte the same afterwards


T = ['--n-test-per-class', '10', '--epochs', '1', '--runs', '1', '--device', 'cpu']


def out_is_file(tmp, mp):
    f = tmp/'results.txt'; f.write_text('my earlier results'); return f

def out_under_file(tmp, mp):
    f = tmp/'results.txt'; f.write_text('my earlier results'); return f/'sub'

def out_read_only(tmp, mp):
    if ROOT: return Path('/sys/adamw-course-out')               # root may write anywhere but in a read-only file system
    d = tmp/'locked'; d.mkdir(); d.chmod(0o555); return d/'out'

def offline_cifar10(tmp, mp):
    mp.setattr(data, 'CIFAR10', OfflineCIFAR10); return tmp/'out'

def offline_pets_setup(tmp, mp):
    import torchvision
    mp.setattr(torchvision.datasets, 'OxfordIIITPet', offline_pets); return tmp/'out'


CASES = [
    # section 1: --out is checked before any data is read or any model trained
    Case('out-is-a-file', ['reproduce', '--data', '{tgz}', *T], 'results.txt is a file, not a folder', setup=out_is_file),
    Case('out-under-a-file', ['reproduce', '--data', '{tgz}', *T], 'results.txt is a file, not a folder', setup=out_under_file),
    Case('out-read-only', ['reproduce', '--data', '{tgz}', *T], 'cannot write there', setup=out_read_only),
    Case('out-is-a-file-study', ['study', 'post_grid', '--size', 'tiny', '--data', '{tgz}', '--device', 'cpu'],
         'is a file, not a folder', setup=out_is_file),
    # section 2, sizes: in the command's words, before training
    Case('n-per-class-above-the-data', ['reproduce', '--data', '{tgz}', '--n-per-class', '21', '--bs', '16', *T],
         "--n-per-class 21, but the class 'airplane' has only 20 images in {tgz} train/: ask for at most 20",
         absent=('n_per_class=',), unchanged=('tgz',)),
    Case('n-test-per-class-above-the-data', ['reproduce', '--data', '{tree}', '--n-per-class', '20', '--bs', '16',
                                             '--n-test-per-class', '11', '--epochs', '1', '--runs', '1', '--device', 'cpu'],
         "--n-test-per-class 11, but the class 'airplane' has only 10 images", absent=('n_test_per_class=',)),
    Case('study-size-above-the-data', ['study', 'post_grid', '--size', 'tiny', '--data', '{small}', '--device', 'cpu'],
         "--size tiny reads 20 training images per class, but the class 'airplane' has only 2 images", absent=('n_per_class=',)),
    Case('no-batch-fits', ['reproduce', '--data', '{tgz}', '--n-per-class', '5', *T],
         '--bs 128 is more than the 50 training images (--n-per-class 5), so no batch fits', absent=('bs=',)),
    Case('no-batch-fits-with-bs', ['reproduce', '--data', '{tgz}', '--n-per-class', '5', '--bs', '51', *T],
         'pass --bs 50 or less'),
    Case('too-few-batches-for-the-schedule', ['reproduce', '--data', '{tgz}', '--n-per-class', '13', *T],
         "make 1 batch(es) an epoch, 1 in 1 epoch(s), but the schedule of 'AdamW' has 3 phases"),
    # section 2, data folders and archives: one line naming the file, and what to do
    Case('empty-folder', ['reproduce', '--data', '{empty}', '--n-per-class', '20', '--bs', '16', *T],
         '{empty} has no train/ folder with class folders in it. Expected the layout cifar10/{train,test}'),
    Case('wrong-layout', ['reproduce', '--data', '{flat}', '--n-per-class', '20', '--bs', '16', *T],
         '{flat} has no train/ folder', unchanged=('flat',)),
    Case('class-missing', ['reproduce', '--data', '{nocat}', '--n-per-class', '20', '--bs', '16', *T],
         "missing ['cat']", unchanged=('nocat',)),
    Case('text-file-named-tgz', ['reproduce', '--data', '{text}', '--n-per-class', '20', '--bs', '16', *T],
         '{text} is not a readable tar archive (no gzip, bzip2, xz or tar data could be read from it)', unchanged=('text',)),
    Case('truncated-archive', ['reproduce', '--data', '{cut}', '--n-per-class', '20', '--bs', '16', *T],
         '{cut} ends early or is damaged', absent=('EOFError',), unchanged=('cut',)),
    Case('corrupt-jpeg', ['reproduce', '--data', '{jpeg}', '--n-per-class', '20', '--bs', '16', *T],
         'Could not decode the image {bad_jpeg_file}', unchanged=('jpeg',)),
    Case('corrupt-jpeg-study', ['study', 'post_grid', '--size', 'tiny', '--data', '{jpeg}', '--device', 'cpu'],
         'Could not decode the image {bad_jpeg_file}'),
    # section 2, offline with no data: the command's --data, not the library's source=
    Case('offline-reproduce-default', ['reproduce', '--n-per-class', '20', '--bs', '16', *T],
         'could not download CIFAR-10', absent=('source=',), setup=offline_cifar10),
    Case('offline-reproduce-torchvision', ['reproduce', '--data', 'torchvision', '--n-per-class', '20', '--bs', '16', *T],
         'Offline? Pass --data with a local CIFAR-10 copy', absent=('source=',), setup=offline_cifar10),
    Case('offline-study', ['study', 'post_grid', '--size', 'tiny', '--device', 'cpu'],
         'Offline? Pass --data with a local CIFAR-10 copy', absent=('source=',), setup=offline_cifar10),
    Case('offline-finetune-cifar10', ['reproduce', 'finetune', '--device', 'cpu'],
         'could not download CIFAR-10 in', absent=('source=',), setup=offline_cifar10),
    Case('offline-finetune-pets', ['reproduce', 'finetune', '--dataset', 'pets', '--device', 'cpu'],
         'could not download the pets images', absent=('source=',), setup=offline_pets_setup),
]


def _fill(s: str, sources: dict) -> str:
    for k, v in sources.items(): s = s.replace('{' + k + '}', str(v))
    return s


def _snapshot(path: Path) -> dict:
    "Every file under `path` (or `path` itself) with its bytes."
    if path.is_file(): return {path: path.read_bytes()}
    return {p: p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_line(case, sources, isolated, monkeypatch, capsys):
    out = case.setup(isolated, monkeypatch) if case.setup else isolated/'out'
    before = {name: _snapshot(sources[name]) for name in case.unchanged}
    out_before = _snapshot(out) if out.exists() else None
    argv = [_fill(a, sources) for a in case.argv] + ['--out', str(out)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e: main(argv)
    err = capsys.readouterr().err
    assert e.value.code == case.code, (e.value.code, err)
    assert err.count('\n') == 1 and err.endswith('\n') and 'Traceback' not in err, f'not one line: {err!r}'
    assert _fill(case.fragment, sources) in err, err
    for words in case.absent: assert words not in err, err
    for name in case.unchanged: assert _snapshot(sources[name]) == before[name], name
    if out_before is not None: assert _snapshot(out) == out_before                 # an existing --out is left as it was
    assert not list(isolated.rglob('runs/*.json')), 'a run record was written'


def test_the_read_only_case_is_real():
    "The read-only --out of the table cannot be written, so that its row tests what it says."
    if not ROOT: pytest.skip('the table uses a folder without write permission')
    with pytest.raises(OSError): Path('/sys/adamw-course-out').mkdir()


# --- the library: DataError names the file, for every bad source ------------------------------------------------

@pytest.mark.parametrize('name,kw,fragment', [
    ('empty', {}, 'has no train/ folder'),
    ('flat', {}, 'has no train/ folder'),
    ('nocat', {}, "missing ['cat']"),
    ('text', {}, 'is not a readable tar archive'),
    ('cut', {}, 'ends early or is damaged'),
    ('jpeg', {}, 'Could not decode the image'),
    ('tgz', dict(n_per_class=21), "n_per_class=21, but the class 'airplane' has only 20 images"),
])
def test_library_raises_data_error(name, kw, fragment, sources, tmp_path):
    with pytest.raises(DataError) as e: load_cifar10(sources[name], cache_dir=tmp_path, **kw)
    msg = str(e.value)
    assert fragment in msg and '\n' not in msg, msg
    assert str(sources[name]) in msg, msg                                    # names the file or folder
    assert not list(tmp_path.glob('*.pt'))                                   # nothing cached from a failed read


def test_library_offline_is_a_download_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, 'CIFAR10', OfflineCIFAR10)
    with pytest.raises(DownloadError, match=r'could not download CIFAR-10 .*Offline\? Pass source='):
        load_cifar10('torchvision', cache_dir=tmp_path)


# --- section 1: interrupted runs keep their records, and resume -------------------------------------------------

CHILD = ['reproduce', '--n-per-class', '20', '--n-test-per-class', '10', '--epochs', '1', '--runs', '1', '--bs', '32',
         '--device', 'cpu']                                  # 4 runs of about a second each


def _child(args, cwd, **kw):
    env = dict(os.environ, OMP_NUM_THREADS='1', XDG_CACHE_HOME=str(cwd/'cache'), PYTHONUNBUFFERED='1')
    env.pop(data.ENV_VAR, None)
    return subprocess.Popen([sys.executable, '-m', 'adamw_course.cli', *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.parametrize('sig,code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=['SIGINT', 'SIGTERM'])
def test_signal_keeps_finished_runs(sig, code, sources, tmp_path):
    out = tmp_path/'out'
    runs = out/'post_grid'/'runs'
    p = _child([*CHILD, '--data', str(sources['tgz']), '--out', str(out)], tmp_path)
    deadline = time.time() + 120
    while not list(runs.glob('*.json')):                       # wait for run 1 of 4 to be on disk, then interrupt run 2
        assert p.poll() is None, p.communicate()
        assert time.time() < deadline, 'no run finished in 120 s'
        time.sleep(0.02)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == code, (p.returncode, stderr)
    assert 'Traceback' not in stderr, stderr
    saved = sorted(runs.glob('*.json'))
    assert 1 <= len(saved) < 4, saved
    last = stderr.strip().splitlines()[-1]
    assert last == (f'Interrupted: {len(saved)} of 4 finished run(s) are saved in {runs}; run the same command again '
                    'to resume from there.'), stderr
    records = {f.name: f.read_bytes() for f in saved}
    for f in saved: assert json.loads(records[f.name])['fingerprint']      # whole records, not half-written files
    assert not [f for f in runs.iterdir() if f.suffix != '.json'], list(runs.iterdir())   # no temporary file left
    if sig == signal.SIGTERM:                                  # resume: only the missing runs train; the saved ones stay
        p = _child([*CHILD, '--data', str(sources['tgz']), '--out', str(out)], tmp_path)
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        assert f'{len(saved)} of 4 runs already recorded' in stdout, stdout
        assert len(list(runs.glob('*.json'))) == 4
        for name, b in records.items(): assert (runs/name).read_bytes() == b, name


# --- section 1: a second run into the same --out ----------------------------------------------------------------

def test_second_run_resumes_or_refuses(sources, tmp_path, monkeypatch, capsys, request):
    "Same settings: resume (nothing trains again). Other settings: refused in one line, nothing touched, unless --overwrite."
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path/'cache'))
    monkeypatch.setattr(experiments, '_DLS', {})
    threads = torch.get_num_threads(); torch.set_num_threads(1)                      # as the child processes run
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    out = tmp_path/'out'
    base = ['reproduce', '--data', str(sources['tgz']), '--n-test-per-class', '10', '--epochs', '1', '--runs', '1',
            '--device', 'cpu', '--out', str(out)]
    assert main([*base, '--n-per-class', '20', '--bs', '32']) == 0
    runs = out/'post_grid'/'runs'
    records = _snapshot(runs)
    assert len(records) == 4
    capsys.readouterr()
    assert main([*base, '--n-per-class', '20', '--bs', '32']) == 0                  # the same command: resumes
    assert '4 of 4 runs already recorded' in capsys.readouterr().out
    assert _snapshot(runs) == records                                               # no run trained again
    first = _snapshot(out)
    for other in (['--n-per-class', '10', '--bs', '32'], ['--n-per-class', '20', '--bs', '16']):
        with pytest.raises(SystemExit) as e: main([*base, *other])                  # other settings: refused
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count('\n') == 1, err
        assert 'with other settings' in err and '--overwrite' in err, err
        assert _snapshot(out) == first                                              # nothing written, nothing deleted
    assert main([*base, '--n-per-class', '10', '--bs', '32', '--overwrite']) == 0   # --overwrite: starts afresh
    recs = [json.loads(f.read_text()) for f in runs.glob('*.json')]
    assert len(recs) == 4 and len({r['fingerprint'] for r in recs}) == 1            # never mixed
    assert json.loads((out/'post_grid'/'study.json').read_text())['n_train'] == 100


# --- section 3: the decoded cache is checked on every load ------------------------------------------------------

def _resum(d): return {**d, 'sha256': data._checksum([d[k] for k in data._CACHE_KEYS])}

def _flip_bit(d):
    x = d['x_train'].clone(); x.view(-1)[777] ^= 0x01; return {**d, 'x_train': x}

def _swap_labels(d):
    y = d['y_train'].clone(); y[0], y[-1] = y[-1].item(), y[0].item(); return {**d, 'y_train': y}

def _wrong_shape(d): return _resum({**d, 'x_test': d['x_test'].permute(0, 2, 3, 1).contiguous()})
def _labels_out_of_range(d): return _resum({**d, 'y_test': d['y_test'] + 1})
def _one_class(d): return _resum({**d, 'y_train': torch.zeros_like(d['y_train'])})
def _int32_labels(d): return _resum({**d, 'y_train': d['y_train'].int()})
def _no_checksum(d): return {k: v for k, v in d.items() if k != 'sha256'}
def _fewer_images(d): return _resum({**d, 'x_train': d['x_train'][:-10], 'y_train': d['y_train'][:-10]})


@pytest.mark.parametrize('damage,words', [
    (_flip_bit, 'does not match the checksum'),
    (_swap_labels, 'does not match the checksum'),
    (_wrong_shape, r'test images are torch.uint8 \(100, 32, 32, 3\)'),
    (_labels_out_of_range, 'test labels go from 1 to 10'),
    (_one_class, 'training split does not hold 20 images of each class'),
    (_int32_labels, 'training labels are torch.int32'),
    (_fewer_images, 'training split does not hold 20 images of each class'),
    (_no_checksum, 'does not match the checksum'),
], ids=lambda v: getattr(v, '__name__', None))
def test_damaged_cache_is_decoded_again(damage, words, sources, tmp_path):
    ref = load_cifar10(sources['tgz'], n_per_class=20, cache_dir=False)
    load_cifar10(sources['tgz'], n_per_class=20, cache_dir=tmp_path)
    cache_file, = tmp_path.glob('*.pt')
    good = torch.load(cache_file, weights_only=True)
    torch.save(damage(good), cache_file)
    with pytest.warns(UserWarning, match=f'Ignoring the damaged cache .*: .*{words}'):
        got = load_cifar10(sources['tgz'], n_per_class=20, cache_dir=tmp_path)
    for a, b in zip(got, ref): assert torch.equal(a, b)
    assert torch.load(cache_file, weights_only=True)['sha256'] == good['sha256']   # the cache was written again, good


def test_good_cache_is_used_as_is(sources, tmp_path, monkeypatch):
    ref = load_cifar10(sources['tgz'], n_per_class=20, cache_dir=tmp_path)
    monkeypatch.setattr(data, '_read_image_folder', None)                          # the source cannot be read again...
    for a, b in zip(load_cifar10(sources['tgz'], n_per_class=20, cache_dir=tmp_path), ref): assert torch.equal(a, b)
