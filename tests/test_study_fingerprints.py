"""The committed study records stay valid: every study folder under results/ was made with the settings that
`make_study` builds today (same fingerprint), so adding a field to `RunSpec` or a study to `STUDIES` cannot
silently orphan the records that the lessons and the verdicts read."""
import json
from pathlib import Path

import pytest

from adamw_course.experiments import STUDIES, RunSpec, make_study

RESULTS = Path(__file__).resolve().parents[1]/'results'
FOLDERS = sorted(p.parent for p in RESULTS.glob('*/study.json') if p.parent.name in STUDIES)


@pytest.mark.parametrize('folder', FOLDERS, ids=[f.name for f in FOLDERS])
def test_committed_fingerprint_matches(folder):
    meta = json.loads((folder/'study.json').read_text())
    study = make_study(meta['name'], meta['size'])
    assert study.fingerprint() == meta['fingerprint'], f"{folder.name}: make_study builds other settings than its records"
    assert study.config() == meta['config']


def test_every_run_record_has_its_study_fingerprint():
    for folder in FOLDERS:
        fp = json.loads((folder/'study.json').read_text())['fingerprint']
        for rec in (folder/'runs').glob('*.json'):
            assert json.loads(rec.read_text())['fingerprint'] == fp, rec


def test_adam_settings_leave_opt_out_of_the_fingerprint():
    adam = make_study('best_vs_best')
    assert all('opt' not in s for s in adam.config()['specs'])
    sgd = make_study('sgd_vs_adamw')
    assert [s.get('opt', 'adam') for s in sgd.config()['specs']] == ['adam', 'sgd']
    assert RunSpec('a', True, 1e-3, 0.1).opt == 'adam'
