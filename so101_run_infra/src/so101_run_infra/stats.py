"""Success rates with their uncertainty: Wilson's score interval for one rate, Newcombe's for a difference; and a
paired bootstrap for the mean difference of two scores of the same units (a checkpoint's error per episode).

Numpy only, so every package can report comparisons the same way. Closed forms (no solver): Wilson (1927) for a
binomial proportion; Newcombe (1998, method 10, the hybrid score interval) for the difference of two independent
proportions, which keeps its coverage near 95% at the small counts and the 0% / 100% rates policy evaluations give,
where the normal approximation collapses to a zero-width interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class Rate:
    successes: int
    trials: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.trials

    def __str__(self) -> str:
        return f"{self.successes}/{self.trials} = {100 * self.value:.0f}% [{100 * self.low:.0f}, {100 * self.high:.0f}]"


@dataclass(frozen=True)
class Difference:
    a: Rate
    b: Rate
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.a.value - self.b.value

    def __str__(self) -> str:
        return f"{100 * self.value:+.0f} points [{100 * self.low:+.0f}, {100 * self.high:+.0f}]"


def wilson(successes: int, trials: int, z: float = Z95) -> Rate:
    """Wilson's score interval for `successes` out of `trials`."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Rate(successes, trials, max(0.0, centre - half), min(1.0, centre + half))


def newcombe(a: Rate, b: Rate) -> Difference:
    """Newcombe's hybrid score interval for a.value - b.value (independent samples)."""
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Difference(a, b, low, high)


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean of a - b over the pairs
    low: float
    high: float
    pairs: int

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] over {self.pairs} pairs"


def paired_bootstrap(a: list[float], b: list[float], resamples: int = 10_000, seed: int = 0) -> PairedDifference:
    """The mean of a - b over paired units (episodes scored both ways) with a 95% percentile bootstrap interval:
    units are resampled with replacement, so no normality is assumed of the per-unit differences."""
    import numpy as np

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need two equal-length lists of at least 2 paired values, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return PairedDifference(float(d.mean()), float(low), float(high), len(d))
