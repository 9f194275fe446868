"""Whether a difference is larger than the noise: intervals and tests on scores, as scipy computes them.

Two kinds of noise are answered here. Over seeds (a configuration's runs): the Student's t interval of
the mean, and Welch's t-test of a configuration against the best, Holm-corrected over the comparisons.
Over test images (two runs on the same test split): a paired bootstrap interval of the accuracy
difference, and the exact McNemar test on the images one run got right and the other wrong.
Imported only where statistics are computed. The distributions come from scipy.special (0.17 s to import)
rather than scipy.stats (0.5 s): a seed sweep's launching process and its recorder both aggregate, and the
tests check every number here against scipy.stats.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # below it, a difference is called distinguishable from chance
RESAMPLES = 10_000  # bootstrap resamples: the interval's ends move by less than 0.1 point between seeds


def mean_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Student's t interval of the mean; None where it says nothing (one value, or no spread at all)."""
    if len(values) < 2 or np.std(values) == 0:
        return None
    half = special.stdtrit(len(values) - 1, (1 + confidence) / 2) * np.std(values, ddof=1) / math.sqrt(len(values))
    return float(np.mean(values) - half), float(np.mean(values) + half)


def welch_p(values: list[float], best: list[float]) -> float | None:
    """Welch's two-sided t-test p-value of `values` against `best`; None where the test is undefined (fewer than two
    values on a side, or neither side with any spread)."""
    if len(values) < 2 or len(best) < 2 or (np.std(values) == 0 and np.std(best) == 0):
        return None
    shares = [np.var(side, ddof=1) / len(side) for side in (values, best)]  # each mean's squared standard error
    t = (np.mean(values) - np.mean(best)) / math.sqrt(sum(shares))
    sides = zip(shares, (values, best), strict=True)
    freedom = sum(shares) ** 2 / sum(share**2 / (len(side) - 1) for share, side in sides)  # Welch-Satterthwaite
    return float(2 * special.stdtr(freedom, -abs(t)))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment over the p-values given (None stays None and is not counted as a comparison)."""
    tested = sorted((p, index) for index, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))  # never below a smaller p's adjustment
        adjusted[index] = running
    return adjusted


def paired_bootstrap(right_a: np.ndarray, right_b: np.ndarray, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy of B minus accuracy of A on the same images, and the percentile interval of that difference over
    `resamples` resamplings of the images (each resample draws the same images for both runs).

    Each image contributes -1, 0 or +1, so a resample is fully described by how many of each it drew: a
    multinomial draw, the same distribution as resampling the images one by one, in constant memory.
    """
    difference = right_b.astype(np.int64) - right_a.astype(np.int64)
    shares = [np.mean(difference == value) for value in (-1, 0, 1)]
    counts = np.random.default_rng(seed).multinomial(len(difference), shares, size=resamples)
    means = (counts[:, 2] - counts[:, 0]) / len(difference)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(difference.mean()), float(low), float(high)


def mcnemar_p(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int, float]:
    """The exact McNemar test: images only A got right, images only B got right, and the two-sided binomial p-value
    of that split under "either run is as likely to be the one right"."""
    only_a = int(np.sum(right_a & ~right_b))
    only_b = int(np.sum(right_b & ~right_a))
    if only_a + only_b == 0:
        return 0, 0, 1.0
    tail = special.bdtr(min(only_a, only_b), only_a + only_b, 0.5)  # the smaller count or fewer, of a fair coin
    return only_a, only_b, float(min(1.0, 2 * tail))  # two-sided: the distribution is symmetric
