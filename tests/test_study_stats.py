"""The study summaries' statistics against scipy's: Student's t quantiles and the paired t interval."""
import random

import pytest
scipy_stats = pytest.importorskip('scipy.stats')

from adamw_course.experiments import NOT_DECIDED, paired_diff, t975


@pytest.mark.parametrize('df', [*range(1, 41), 50, 75, 100, 200, 1000])
def test_t975_matches_scipy(df):
    assert t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=2e-4)


@pytest.mark.parametrize('seed', range(20))
def test_paired_interval_matches_scipy_ttest_rel(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 12)
    a = {s: rng.gauss(0.6, 0.02) for s in range(n)}
    b = {s: a[s] + rng.gauss(rng.choice([-0.01, 0, 0.01]), 0.005) for s in range(n)}
    p = paired_diff(a, b)
    res = scipy_stats.ttest_rel([a[s] for s in range(n)], [b[s] for s in range(n)])
    ci = res.confidence_interval(0.95)
    assert (p['lo'], p['hi']) == pytest.approx((ci.low, ci.high), abs=1e-3 * (p['hi'] - p['lo']) + 1e-12)
    decided = res.pvalue < 0.05
    assert (p['verdict'] != NOT_DECIDED) == decided
