"""Does the test agree with the calibration? The exact predictive check of a held-out pass count.

A threshold set at the k-th smallest of n calibration scores passes a share F(t) of the population
whose law is Beta(k, n - k + 1) whenever calibration and test parts are exchangeable (the k-th order
statistic of n uniforms), whatever the scores' distribution. A held-out set of m parts then passes
X ~ Binomial(m, F(t)) of them: over both, X follows the beta-binomial law BetaBinomial(m, k, n - k + 1).
Its equal-tailed 95% interval is the count the calibration predicts; a count outside it (two-sided
p-value below 0.05) says that the calibration and test parts look unlike each other: different
sources, an order (drift over the file), or part variants in one set and not the other. It is a
check of the study's own assumption, reported beside the pass rate and its interval, never instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

LEVEL = 0.95


@dataclass(frozen=True)
class PredictiveCheck:
    """The held-out pass count against what the calibration predicts under exchangeability."""

    observed: int  # held-out parts passed
    n_test: int
    low: int  # the equal-tailed 95% predictive interval of the count
    high: int
    p_value: float  # two-sided: 2 x the smaller tail at the observed count, at most 1
    rank: int  # the threshold's rank among the calibration scores
    n_calibration: int

    @property
    def agrees(self) -> bool:
        return self.low <= self.observed <= self.high

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "agrees": self.agrees}


def predictive_check(observed: int, n_test: int, rank: int, n_calibration: int, level: float = LEVEL
                     ) -> PredictiveCheck | None:
    """The check of ``observed`` passes out of ``n_test`` against a threshold at the ``rank``-th smallest of
    ``n_calibration`` scores; None where it cannot be made (no test parts, a rank outside 1..n)."""
    from scipy.stats import betabinom

    m, k, n = int(n_test), int(rank), int(n_calibration)
    if m < 1 or not 1 <= k <= n or not 0 <= observed <= m:
        return None
    law = betabinom(m, k, n - k + 1)
    alpha = 1 - level
    low, high = int(law.ppf(alpha / 2)), int(law.ppf(1 - alpha / 2))
    p = min(1.0, 2 * min(float(law.cdf(observed)), float(law.sf(observed - 1))))
    return PredictiveCheck(int(observed), m, low, high, p, k, n)


def check_words(c: PredictiveCheck, unit: str = "good part") -> str | None:
    """One sentence where the count falls outside what the calibration predicts (None where it agrees)."""
    if c.agrees:
        return None
    side = "fewer" if c.observed < c.low else "more"
    return (f"The held-out {unit}s do not behave like the calibration {unit}s: {c.observed} of {c.n_test} passed, "
            f"{side} than the {c.low} to {c.high} the calibration predicts if both came from the same population "
            f"(95% predictive interval, exact beta-binomial; p = {c.p_value:.3f}). Check where each set came from, "
            "whether the files are in production order (the calibration drawn from one stretch of time), and "
            "whether one set holds part variants the other lacks.")
