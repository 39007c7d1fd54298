"""The line over time: do the thresholds the study set still mean what they meant? Pure statistics.

A **reference** is what the study stored about non-test data: stage 1's scores of the held-out
normal images and its threshold, the one-stage distances of the known validation images (the
images that set tau) with tau and its acceptance target, and the known classes' share among the
study's test decisions. A **batch** is the rows ``osd predict`` wrote for a stretch of production
(a file, or ``window`` consecutive images). Each batch gets these checks, each a p-value:

- ``stage1_scores``: two-sample Kolmogorov-Smirnov test of the stage-1 scores of the images stage 1
  passed (at or below its threshold) against the held-out normals it passes, with the population
  stability index (PSI, reference deciles) beside it: a camera or lighting change moves them, a
  line's steady share of defects (flagged, above the threshold) does not;
- ``stage1_flagged``: exact one-sided binomial test of the share flagged ``defect`` against the
  upper end of the held-out normals' flag rate's exact 95% interval (more flagged than the
  threshold allows for good parts: more defects, or drift; for a line whose images are mostly
  good parts);
- ``distances``: Kolmogorov-Smirnov test of the one-stage distances against the known validation
  images', with PSI. Where stage 1 is checked (a line of good and bad parts) the one-stage checks
  read the images stage 1 flagged, the ones the classifier judges in the cascade; else every row;
- ``unknown_share``: exact one-sided binomial test of the share called ``unknown`` against
  1 - the lower end of tau's acceptance interval on its validation images (the most that tau,
  known only to that interval, implies for known defects);
- ``class_mix``: chi-square test of the known classes among the batch's accepted images against
  the study's test mix: two samples (a test of homogeneity), since the reference's shares are
  counted on a finite set too.

**Status** (per batch, stated in every output): with m checks in a batch, ``drift`` when p <
0.01 / m, ``watch`` when p < 0.05 / m (Bonferroni within the batch), else ``ok``. PSI is reported
beside the p-values only where its no-drift value is small (:func:`psi_meaningful`: a batch of several
hundred images against a reference of several hundred; below that it alone exceeds the rule of thumb's
0.1 / 0.25) and never sets the status. Batches
are tested one by one: over many batches some ``watch`` is expected by chance (5% of batches at
most under no drift), a ``drift`` at 1%. That is the rule without a baseline from the line; with one,
control charts at a stated false-alarm rate over time decide (:mod:`osd.control_chart`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from osd.proportion import clopper_pearson
from osd.types import JsonObject

ALPHA_DRIFT, ALPHA_WATCH = 0.01, 0.05
OK, WATCH, DRIFT = "ok", "watch", "drift"
RULE = ("status per batch: drift when p < 0.01/m, watch when p < 0.05/m (m checks in the batch; Bonferroni), else ok; "
        "PSI shown only where the batch and reference are large enough for it to mean something, never used for the "
        "status")
CHECKS = ("stage1_scores", "stage1_flagged", "distances", "unknown_share", "class_mix")
HUMAN = {"stage1_scores": "stage-1 scores", "stage1_flagged": "share flagged defect", "distances": "one-stage distances",
         "unknown_share": "share called unknown", "class_mix": "known-class mix"}
MIN_ROWS = 5  # a check needs this many values in a batch, else it is "not tested"


@dataclass(frozen=True)
class Reference:
    """What the study stored about non-test data, as arrays (any part may be absent)."""

    stage1_normal: np.ndarray | None = None  # held-out normal images' stage-1 scores
    stage1_threshold: float | None = None
    distance_val: np.ndarray | None = None  # known validation images' squared Mahalanobis distances
    tau: float | None = None
    acceptance: float | None = None  # tau's acceptance target
    acceptance_low: float | None = None  # the lower end of tau's 95% acceptance interval on its validation images
    class_mix: dict[str, float] = field(default_factory=dict)  # known class -> share of the study's test decisions
    class_n: int | None = None  # how many decisions the shares are of (None: a reference made before it was kept)

    def arrays(self) -> dict[str, np.ndarray]:
        """The reference as named arrays (an npz file of plain arrays: no pickle)."""
        out: dict[str, np.ndarray] = {}
        if self.stage1_normal is not None:
            out["stage1_normal"] = np.asarray(self.stage1_normal, np.float64)
            out["stage1_threshold"] = np.array(self.stage1_threshold, np.float64)
        if self.distance_val is not None:
            out["distance_val"] = np.asarray(self.distance_val, np.float64)
            out["tau"] = np.array(self.tau, np.float64)
            out["acceptance"] = np.array(self.acceptance, np.float64)
            if self.acceptance_low is not None:
                out["acceptance_low"] = np.array(self.acceptance_low, np.float64)
        if self.class_mix:
            out["class_names"] = np.array(list(self.class_mix), dtype=np.str_)
            out["class_shares"] = np.array(list(self.class_mix.values()), np.float64)
            if self.class_n is not None:
                out["class_n"] = np.array(self.class_n, np.int64)
        return out

    @classmethod
    def from_arrays(cls, a: Any) -> Reference:
        def get(name: str) -> Any:
            return a[name] if name in a else None

        mix = ({str(n): float(v) for n, v in zip(a["class_names"], a["class_shares"])}
               if "class_names" in a else {})
        scalar = (lambda v: None if v is None else float(v))  # noqa: E731 - a 0-d array to a float
        n = get("class_n")
        return cls(get("stage1_normal"), scalar(get("stage1_threshold")), get("distance_val"), scalar(get("tau")),
                   scalar(get("acceptance")), scalar(get("acceptance_low")), mix, None if n is None else int(n))


def psi(reference: np.ndarray, batch: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``batch`` against ``reference`` over the reference's deciles
    (shares floored at 1e-4 so that an empty bin does not make it infinite)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    b = np.bincount(np.searchsorted(edges, batch, side="right"), minlength=len(edges) + 1) / len(batch)
    r, b = np.maximum(r, 1e-4), np.maximum(b, 1e-4)
    return float(np.sum((b - r) * np.log(b / r)))


PSI_NOISE_MAX = 0.05  # PSI is shown only where its no-drift value alone stays below half the 0.1 rule of thumb


def psi_noise(n: int, m: int, bins: int = 10) -> float:
    """PSI's mean under no drift for a batch of ``n`` against a reference of ``m`` over ``bins`` bins: a
    symmetrised chi-square, (bins - 1)(1/n + 1/m) to first order. Measured against a reference of 120
    (500 no-drift batches each): mean 0.95 at n = 25 (88% above 0.25), 0.34 at 50, 0.17 at 100, 0.097 at
    400 where this gives 0.098; below about 100 empty bins make it worse than this, so where it is shown
    (this value < 0.05: both sets of a few hundred) it is accurate."""
    return (bins - 1) * (1 / max(n, 1) + 1 / max(m, 1))


def psi_meaningful(n: int, m: int, bins: int = 10) -> bool:
    """Whether PSI is worth printing for this batch and reference size (see :data:`PSI_NOISE_MAX`)."""
    return psi_noise(n, m, bins) < PSI_NOISE_MAX


@dataclass(frozen=True)
class Check:
    """One check of one batch: its test, statistic, p-value, PSI where it has one, and the numbers behind it."""

    batch: str
    check: str
    test: str
    n: int
    statistic: float | None
    p_value: float | None
    psi: float | None = None
    observed: float | None = None  # a share, where the check is about one
    expected: float | None = None
    status: str = "not tested"

    def to_dict(self) -> JsonObject:
        return asdict(self)


def _ks(batch: str, name: str, ref: np.ndarray | None, values: np.ndarray) -> Check | None:
    from scipy.stats import ks_2samp

    if ref is None or len(ref) < MIN_ROWS:
        return None
    if len(values) < MIN_ROWS:
        return Check(batch, name, "two-sample Kolmogorov-Smirnov", len(values), None, None)
    r = ks_2samp(values, ref)
    shown = psi(np.asarray(ref, float), values) if psi_meaningful(len(values), len(ref)) else None
    return Check(batch, name, "two-sample Kolmogorov-Smirnov", len(values), float(r.statistic), float(r.pvalue), shown)


def _excess(batch: str, name: str, k: int, n: int, p0: float | None) -> Check | None:
    from scipy.stats import binomtest

    if p0 is None:
        return None
    if n < MIN_ROWS:
        return Check(batch, name, "exact binomial, one-sided (more than expected)", n, None, None)
    p0 = min(max(p0, 1e-6), 1 - 1e-6)
    p = binomtest(k, n, p0, alternative="greater").pvalue
    return Check(batch, name, "exact binomial, one-sided (more than expected)", n, float(k), float(p),
                 observed=k / n, expected=p0)


def _mix(batch: str, classes: Sequence[str], shares: dict[str, float], n_ref: int | None = None) -> Check | None:
    """The batch's known-class counts against the reference's. With the reference's own count (``n_ref``)
    a two-sample chi-square test of homogeneity: the reference's shares are a sample too, and a
    goodness-of-fit test that takes them as exact flags their noise (measured: 4% of no-drift batches of
    100 against a reference of 120 decisions, target 1%). Without it (a reference made before it was
    kept), goodness of fit."""
    from scipy.stats import chi2_contingency, chisquare

    if not shares:
        return None
    names = list(shares)
    counts = np.array([sum(c == name for c in classes) for name in names], float)
    n = int(counts.sum())
    test = "chi-square test of homogeneity (two samples)" if n_ref else "chi-square goodness of fit"
    if n < MIN_ROWS:
        return Check(batch, "class_mix", test, n, None, None)
    expected = np.array([shares[c] for c in names], float)
    if n_ref:
        table = np.vstack([np.round(expected / expected.sum() * n_ref), counts])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            return Check(batch, "class_mix", test, n, None, None)
        stat, p, _, _ = chi2_contingency(table, correction=False)
        return Check(batch, "class_mix", test, n, float(stat), float(p))
    expected = expected / expected.sum() * n
    r = chisquare(counts, np.maximum(expected, 1e-9))
    return Check(batch, "class_mix", test, n, float(r.statistic), float(r.pvalue))


def check_batch(name: str, rows: Sequence[JsonObject], ref: Reference) -> list[Check]:
    """Every check the reference and the rows allow, statuses set (see the module's rule)."""
    ok_rows = [r for r in rows if r.get("status", "ok") == "ok"]

    def col(key: str, of: Sequence[JsonObject]) -> np.ndarray:
        return np.array([float(r[key]) for r in of if r.get(key) not in (None, "")], float)

    checks: list[Check | None] = []
    s1 = col("stage1_score", ok_rows)
    seen = ok_rows  # the images the classifier judges
    if ref.stage1_normal is not None and s1.size:
        thr = ref.stage1_threshold
        normal = np.asarray(ref.stage1_normal, float)
        # what the held-out normals allow for the flag rate: the upper end of its exact 95% interval (a rate
        # seen on n good parts is known only that well; a test against the rate itself flags that noise)
        base = clopper_pearson(int(np.sum(normal > thr)), len(normal))[1]
        # the scores of the images stage 1 passed against the held-out normals it passes: a line's steady
        # share of defects (flagged, above the threshold) does not move them, a camera or lighting change does
        checks += [_ks(name, "stage1_scores", normal[normal <= thr], s1[s1 <= thr]),
                   _excess(name, "stage1_flagged", int(np.sum(s1 > thr)), int(s1.size), base)]
        # a line of good and bad parts: the classifier sees what stage 1 flags (the cascade), so the one-stage
        # checks read those images, not the good parts it was never meant to judge
        seen = [r for r in ok_rows if r.get("stage1_score") not in (None, "") and float(r["stage1_score"]) > thr]
    dist = col("one_stage_score", seen)
    if ref.distance_val is not None and dist.size:
        unknown = sum(r.get("one_stage") == "unknown" for r in seen if r.get("one_stage_score") not in (None, ""))
        # tau's realised acceptance is known only to its interval on the validation images: the share called
        # unknown is tested against the largest rejection rate that interval allows
        low = ref.acceptance_low if ref.acceptance_low is not None else ref.acceptance
        checks += [_ks(name, "distances", ref.distance_val, dist),
                   _excess(name, "unknown_share", int(unknown), int(dist.size), None if low is None else 1 - low)]
        accepted = [r.get("closed_class") for r in seen if r.get("one_stage") not in (None, "", "unknown")]
        checks.append(_mix(name, accepted, ref.class_mix, ref.class_n))
    found = [c for c in checks if c is not None]
    m = max(1, sum(c.p_value is not None for c in found))
    return [c if c.p_value is None else _with_status(c, m) for c in found]


def _with_status(c: Check, m: int) -> Check:
    from dataclasses import replace

    status = DRIFT if c.p_value < ALPHA_DRIFT / m else WATCH if c.p_value < ALPHA_WATCH / m else OK
    return replace(c, status=status)


def batch_status(checks: Sequence[Check]) -> str:
    """The worst status of a batch's checks (``not tested`` when none was tested)."""
    tested = [c.status for c in checks if c.p_value is not None]
    if not tested:
        return "not tested"
    return DRIFT if DRIFT in tested else WATCH if WATCH in tested else OK


def batches(files: Sequence[tuple[str, list[JsonObject]]], window: int | None = None
            ) -> list[tuple[str, list[JsonObject]]]:
    """Each file a batch, in the order given (time); with ``window``, every ``window`` consecutive rows
    across the files (a last, shorter window is kept)."""
    if not window:
        return list(files)
    rows = [(f, r) for f, rs in files for r in rs]
    out = []
    for start in range(0, len(rows), window):
        part = rows[start:start + window]
        out.append((f"rows {start + 1}-{start + len(part)}", [r for _, r in part]))
    return out
