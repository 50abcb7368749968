"""so101_run_infra.stats against published figures, scipy's own Wilson interval and Student's t interval."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from so101_run_infra.stats import newcombe, paired_bootstrap, wilson


@pytest.mark.parametrize(("k", "n"), [(0, 20), (1, 20), (12, 20), (20, 20), (37, 60), (81, 263)])
def test_wilson_matches_scipy(k, n):
    rate = wilson(k, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert rate.low == pytest.approx(ci.low, abs=1e-12) and rate.high == pytest.approx(ci.high, abs=1e-12)


def test_newcombe_reproduces_the_papers_examples():
    # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10
    cases = [((56, 70), (48, 80), (0.0524, 0.3339)), ((9, 10), (3, 10), (0.1705, 0.8090))]
    for (k1, n1), (k2, n2), (low, high) in cases:
        diff = newcombe(wilson(k1, n1), wilson(k2, n2))
        assert diff.low == pytest.approx(low, abs=1e-4) and diff.high == pytest.approx(high, abs=1e-4)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="0 <= successes <= trials"):
        wilson(21, 20)
    with pytest.raises(ValueError, match="trials >= 1"):
        wilson(0, 0)


def test_the_paired_bootstrap_agrees_with_students_t_on_normal_differences():
    import numpy as np
    from scipy import stats

    rng = np.random.default_rng(3)
    b = rng.normal(4.0, 1.0, 400)
    a = b + rng.normal(0.2, 0.5, 400)  # paired: the same units, a shifted by 0.2 with noise
    got = paired_bootstrap(list(a), list(b))
    d = a - b
    t = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert got.mean == pytest.approx(d.mean(), abs=1e-12) and got.pairs == 400
    assert got.low == pytest.approx(t[0], abs=0.01) and got.high == pytest.approx(t[1], abs=0.01)
    same = paired_bootstrap([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # every pair differs by 0.5: no spread
    assert (same.mean, same.low, same.high) == pytest.approx((0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1.0, 2.0], [1.0])
