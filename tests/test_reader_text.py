"""What readers see carries no trace of how the course is built: no build flags, no paths of the machine that ran the
notebooks, no offline-fixture folders, no issue talk, in any lesson's prose or committed outputs. The course home's
"Quick start" is the one exception: it is the contributors' section, and it names the test command on purpose."""
import json, re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / 'nbs'
BUILD_TALK = re.compile(r"shared/|\bshared (data|copy)\b|this machine's|\bissues?\b|IN_TEST|/work/|/root/|/tmp/|/home/|\bnbdev-test\b|"
                        r"\btest mode\b|\bCI\b|\bFULL\b")
CONTRIBUTORS = ('## Quick start',)


def reader_texts(nb_path: Path):
    "(where, text) for every markdown cell and every text output of a notebook."
    for i, c in enumerate(json.loads(nb_path.read_text())['cells']):
        if c['cell_type'] == 'markdown':
            src = ''.join(c['source'])
            if not src.startswith(CONTRIBUTORS): yield f'cell {i} (markdown)', src
        for o in c.get('outputs', []):
            data = o.get('data', {})
            yield f'cell {i} (output)', ''.join(o.get('text', '')) + ''.join(data.get('text/plain', '')) + ''.join(data.get('text/markdown', ''))


@pytest.mark.parametrize('nb', sorted(NBS.glob('*.ipynb')), ids=lambda p: p.stem)
def test_no_build_talk(nb):
    hits = [f"{where}: ...{t[max(0, m.start() - 40):m.end() + 40]!r}" for where, t in reader_texts(nb) for m in BUILD_TALK.finditer(t)]
    assert not hits, '\n'.join(hits)


def test_the_check_can_fail(tmp_path):
    nb = {'cells': [{'cell_type': 'markdown', 'source': ['Run it in test mode.']},
                    {'cell_type': 'code', 'source': [], 'outputs': [{'output_type': 'stream', 'text': ['/tmp/x/y.pt is bad']}]}]}
    p = tmp_path / 'x.ipynb'; p.write_text(json.dumps(nb))
    assert len([m for _, t in reader_texts(p) for m in BUILD_TALK.finditer(t)]) == 2
