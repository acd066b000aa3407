"""The cheap pieces of tools/gpu_check.py, on the CPU: the sync counter, the report writer and the exit code.
(CI runs the whole script with --dry-run separately.)"""
import importlib.util, json, os, pathlib
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('gpu_check', REPO/'tools'/'gpu_check.py')
gc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gc)


def test_host_read_counter_counts_each_call_and_its_caller():
    t = torch.tensor([1.5])
    orig = torch.Tensor.item
    t.item()                                              # outside the block: not counted
    with gc.HostReadCounter() as c:
        for _ in range(3): assert t.item() == 1.5         # the wrapper still returns the original's result
        assert t.tolist() == [1.5]
        assert torch.equal(t.cpu(), t)
        torch.tensor(2.0) + t                             # no read: not counted
    t.item()
    assert [m for m, _ in c.calls] == ['item'] * 3 + ['tolist', 'cpu']
    assert all(w.startswith('tests/test_gpu_check.py:') and 'test_host_read_counter' in w for _, w in c.calls), c.calls
    assert torch.Tensor.item is orig and 'item' not in vars(torch.Tensor)   # the patch is undone


def test_host_read_counter_sees_calls_inside_the_library():
    "Not vacuous for the Learner: a read made deep in library code (the Recorder's flush of its device-side losses) is counted too."
    from adamw_course.callback import Recorder
    rec = Recorder()
    class FakeLearn: training, loss = True, torch.tensor(0.25)
    rec.learn = FakeLearn()
    with gc.HostReadCounter() as c: rec.after_loss()
    assert c.calls == []                                  # noting the loss reads nothing
    rec._pending.append(rec._loss)                        # what after_batch does with it
    with gc.HostReadCounter() as c: rec.flush()
    assert len(c.calls) == 1 and c.calls[0][0] == 'tolist' and c.calls[0][1].startswith('adamw_course/callback.py:')
    assert rec.losses == [0.25]


def test_short_path_and_host_side():
    assert gc.short_path('/x/y/site-packages/adamw_course/adam.py') == 'adamw_course/adam.py'
    assert gc.short_path('/elsewhere/clone/adamw_course/learner.py') == 'adamw_course/learner.py'
    assert gc.short_path('/usr/lib/python3/site-packages/torch/nn/modules/module.py') == 'torch/nn/modules/module.py'
    c = gc.HostReadCounter()
    assert c.host_side('adamw_course/adam.py:122 <genexpr>') and not c.host_side('adamw_course/callback.py:112 after_loss')


def test_sync_stats_splits_phases_and_leaves_out_host_side_reads():
    calls = [('item', 'a.py:1 f'), ('item', 'host.py:2 g'), ('item', 'b.py:3 h')] * 4 + [('tolist', 'l.py:9 r')] \
            + [('tolist', 'l.py:9 r')]                    # 12 in training, then one per phase end
    marks = {'before_train': 0, 'after_train': 13, 'before_validate': 13, 'after_validate': 14}
    s = gc.sync_stats(calls, lambda w: w.startswith('host.py'), marks, n_train=4)
    assert (s['syncs_total'], s['syncs_train'], s['syncs_valid'], s['host_side_total']) == (10, 9, 1, 4)
    assert s['syncs_per_train_batch'] == 2.5 and s['train_syncs_per_train_batch'] == 2.25
    assert s['by_caller'] == {'item @ a.py:1 f': 4, 'item @ b.py:3 h': 4, 'tolist @ l.py:9 r': 2}


def _report(statuses):
    secs = [dict(name=f's{i}', status=st, seconds=1.0, summary=f'figure {i} | x', details={}, error=None)
            for i, st in enumerate(statuses)]
    return dict(dry_run=True, started='2026-01-01T00:00:00+00:00', budget_s=480, total_s=3.0, data=None,
                env=dict(device_name='CPU', torch=torch.__version__), sections=secs, exit_code=gc.exit_code(secs))


def test_exit_code():
    assert gc.exit_code([]) == 0
    assert _report(['ok', 'skipped', 'ok'])['exit_code'] == 0
    assert _report(['ok', 'failed', 'skipped'])['exit_code'] == 1
    assert _report(['failed'])['exit_code'] == 1


def test_write_report_writes_both_files_through_os_replace(tmp_path, monkeypatch):
    replaced, real_replace = [], os.replace
    def spy(src, dst):
        replaced.append((Path(src), Path(dst)))
        assert Path(dst).name in ('report.json', 'report.md') and Path(src).read_text()   # complete before the swap
        real_replace(src, dst)
    monkeypatch.setattr(gc.os, 'replace', spy)
    out = tmp_path/'new'/'dir'
    j, m = gc.write_report(out, _report(['ok', 'failed']))
    assert [d.name for _, d in replaced] == ['report.json', 'report.md']
    assert all(s.parent == d.parent and s != d for s, d in replaced)            # same folder: an atomic rename
    assert json.loads(j.read_text())['exit_code'] == 1
    md = m.read_text()
    assert '| s0 | ok | 1.0 | figure 0 \\| x |' in md and '| s1 | failed |' in md and 'dry run: yes' in md
    assert sorted(p.name for p in out.iterdir()) == ['report.json', 'report.md']  # no temporary file left


def test_write_report_leaves_the_old_report_whole_when_writing_fails(tmp_path, monkeypatch):
    gc.write_report(tmp_path, _report(['ok']))
    old = (tmp_path/'report.json').read_text()
    real_write = pathlib.Path.write_text
    def half_then_fail(self, text, *a, **k):
        real_write(self, text[:len(text) // 2])
        raise OSError('disk full')
    monkeypatch.setattr(pathlib.Path, 'write_text', half_then_fail)
    with pytest.raises(OSError, match='disk full'): gc.write_report(tmp_path, _report(['failed']))
    monkeypatch.undo()
    assert (tmp_path/'report.json').read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['report.json', 'report.md']


def test_run_section_records_failures_skips_and_the_budget():
    budget = gc.Budget(60)
    def boom(): raise ValueError("first line\nthe last line says what went wrong")
    r = gc.run_section('x', boom, budget, estimate_s=1)
    assert r['status'] == 'failed' and r['error'] == 'ValueError: the last line says what went wrong' and 'traceback' in r['details']
    def skip(): raise gc.Skip('no data')
    assert gc.run_section('y', skip, budget, 1)['status'] == 'skipped'
    ran = []
    r = gc.run_section('z', lambda: ran.append(1), budget, estimate_s=3600)   # would pass the budget: not started
    assert r['status'] == 'skipped' and not ran and 'budget' in r['summary']
    assert gc.run_section('ok', lambda: ('fine', {'a': 1}), budget, 1)['summary'] == 'fine'


def test_benchmark_output_parsing():
    out = ("candidate  median ms\nours, foreach (default)  1.0  1.0  1.02x\n\n"
           "ours / torch foreach: 1.02x (ratio of medians), 1.01x (median of per-round ratios); target <= 1.00x on cuda: MISSED\n"
           "ours / torch fused: 1.50x\nsame parameters as torch foreach after 36 steps: True\n")
    assert gc.bench_summary('optim_step', out).startswith('ours / torch foreach: 1.02x')
    assert 'same parameters as torch foreach after 36 steps: True' in gc.bench_summary('optim_step', out)
    assert gc.bench_summary('lr_find', 'lr_find / (plain steps + save/restore) = 1.050  (budget 1.10: PASS)\n') \
        == 'lr_find / (plain steps + save/restore) = 1.050  (budget 1.10: PASS)'
    le = 'wall Learner / hand: median ratio 1.010, ratio of minima 1.020; +0.10 ms per training batch\n'
    assert gc.bench_summary('learner_epoch', le) == 'wall Learner / hand: median ratio 1.010; +0.10 ms per training batch'


@pytest.mark.skipif(torch.cuda.is_available(), reason='the refusal is for machines without CUDA')
def test_refuses_without_cuda_unless_dry_run(tmp_path, capsys):
    assert gc.main(['--out', str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == 'no CUDA device: run with --dry-run on a CPU'
    assert not any(tmp_path.iterdir())


def test_notebook_lines_reads_colab_check_output():
    out = ("[IPKernelApp] WARNING | noise\n05a_data.ipynb: OK (12.3 s)\n09_finetune.ipynb: RuntimeError: boom (3.0 s)\n"
           "colab check, reader mode (size smoke, GPU visible): 2 notebooks with adamw_course 0.1.0, 1 failing, 15 s\n")
    assert gc.notebook_lines(out) == ['05a_data.ipynb: OK (12.3 s)', '09_finetune.ipynb: RuntimeError: boom (3.0 s)']
    assert set(gc.SIZED_LESSONS) <= {p.stem for p in (gc.REPO / 'nbs').glob('*.ipynb')}
    # every lesson with a SIZE switch is in the GPU check's list
    sized = {p.stem for p in (gc.REPO / 'nbs').glob('[0-9]*.ipynb') if "lesson_size('small')" in p.read_text()}
    assert sized == set(gc.SIZED_LESSONS), sized ^ set(gc.SIZED_LESSONS)
