"""The release workflow (.github/workflows/release.yaml), checked offline: it parses, runs on version tags only,
builds the same artifacts as the release check (tools/check_wheel.sh: `python -m build`, `twine check --strict`),
checks the tag against the package's version, and publishes with PyPI's trusted publishing (no stored token)."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WF = yaml.safe_load((ROOT / '.github/workflows/release.yaml').read_text())


def _steps(job): return WF['jobs'][job]['steps']
def _runs(job): return '\n'.join(s.get('run', '') for s in _steps(job))


def test_triggers_on_version_tags_only():
    on = WF.get('on', WF.get(True))           # YAML 1.1 reads a bare `on:` key as True
    assert set(on) == {'push'} and set(on['push']) == {'tags'} and on['push']['tags'] == ['v*']


def test_builds_what_the_release_check_builds():
    wheel_check = (ROOT / 'tools/check_wheel.sh').read_text()
    assert 'python3 -m build' in wheel_check and 'twine check --strict' in wheel_check
    runs = _runs('build')
    assert re.search(r'python -m build \.', runs) and 'twine check --strict dist/*' in runs
    assert any(s.get('uses', '').startswith('actions/upload-artifact') and s['with']['path'] == 'dist/' for s in _steps('build'))


def test_tag_must_match_the_version():
    runs = _runs('build')
    assert '__version__' in runs and '$GITHUB_REF_NAME' in runs
    assert re.search(r'__version__ = "(.+?)"', (ROOT / 'adamw_course/__init__.py').read_text())   # what the step reads


def test_publishes_with_trusted_publishing():
    pub = WF['jobs']['publish']
    assert pub['needs'] == 'build' and pub['permissions'] == {'id-token': 'write'}
    assert WF['permissions'] == {'contents': 'read'}                       # nothing else may write
    uses = [s.get('uses', '') for s in pub['steps']]
    assert 'pypa/gh-action-pypi-publish@release/v1' in uses
    assert not any('password' in s.get('with', {}) for s in pub['steps'])  # no API token
