"""so101_run_infra.stats against published figures and scipy's own Wilson interval."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from so101_run_infra.stats import newcombe, wilson


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
