"""A cached result is recomputed only when its key changes, and the key holds the step's algorithm
version: a change to what a step computes must bump that version, or every result cached before it
is served unchanged (a detection study cached before zero-width intervals were dropped kept its
AUROC "[1.000, 1.000]" through every later run).

Each evaluation's library functions run here on fixed data built to reach the edges (a perfect
separation, rates at 0 and 1, an unknown class scored like the knowns), and the digest of what they
return is pinned to the step's current version. A change of output under the same version fails:
bump the version (the step's ``*_ALGORITHM``) and pin the new digest beside it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from osd.artifacts import plain


def digest(obj: object) -> str:
    """A short hash of ``obj`` with its numbers rounded to 6 significant digits (the last bits of a
    float differ between library versions and BLAS builds; a change in method moves far more, or
    adds or drops an entry)."""
    def rounded(x: object) -> object:
        if isinstance(x, float):
            return float(f"{x:.6g}")
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rounded(v) for v in x]
        return x

    text = json.dumps(rounded(plain(obj)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _open_set_case() -> dict:
    from osd.metrics import EncodedResults, metric_intervals, open_set_metrics, paired_difference

    rng = np.random.default_rng(7)
    classes = ["a", "b", "c"]
    true = ["a"] * 20 + ["b"] * 20 + ["c"] * 20 + ["x"] * 15 + ["y"] * 15
    unk = np.array([t not in classes for t in true])
    closed = np.array([t if t in classes else classes[i % 3] for i, t in enumerate(true)], dtype=object)
    closed[:3] = "b"  # three known images named wrongly
    separated = np.where(unk, 10.0, 1.0) + rng.random(len(true))  # every unknown above every known: AUROC 1
    mixed = rng.normal(0, 1, len(true)) + 0.8 * unk
    out = {}
    for name, score, tau in (("separated", separated, 5.0), ("mixed", mixed, 0.9)):
        pred = np.where(score > tau, "unknown", closed)
        out[name] = {"metrics": open_set_metrics(true, pred, closed, score, unk, classes),
                     "intervals": metric_intervals(true, pred, closed, score, unk, classes, 200, 0)}
    a = EncodedResults(true, np.where(separated > 5.0, "unknown", closed), closed, separated, unk, classes)
    b = EncodedResults(true, np.where(mixed > 0.9, "unknown", closed), closed, mixed, unk, classes)
    out["paired"] = paired_difference(a, b, ("auroc", "open_set_accuracy", "unknown_rejection"), unk, 200, 0)
    return out


def _detection_case() -> dict:
    from osd.detection import evaluate

    rng = np.random.default_rng(3)
    normal = rng.normal(1.0, 0.2, 40)
    perfect = evaluate(normal, rng.normal(5.0, 0.2, 60), 1.5, n_boot=200, seed=0)  # AUROC 1, every defect found
    overlap = evaluate(normal, rng.normal(1.4, 0.3, 60), 1.3, n_boot=200, seed=0)
    return {"perfect": perfect.to_dict(), "overlap": overlap.to_dict()}


def _three_outcome_case() -> dict:
    from osd.metrics import paired_difference
    from osd.three_outcome import ThreeOutcome, image_auroc, image_auroc_interval, kinds, true_outcomes

    rng = np.random.default_rng(5)
    roles = ["known"] * 30 + ["unknown"] * 10 + ["normal"] * 20
    labels = ["a", "b", "c"] * 10 + ["x"] * 10 + ["good"] * 20
    kind = kinds(roles)
    true = true_outcomes(labels, kind)
    classes = ["a", "b", "c"]
    first = np.array(list(true), dtype=object)
    first[:4] = "unknown"
    second = np.array(list(true), dtype=object)
    second[30:35] = "no_defect"
    second[40:43] = "a"
    enc = {n: ThreeOutcome(true, p, kind, classes) for n, p in (("first", first), ("second", second))}
    stage1 = np.where(kind == 2, 0.0, 1.0) + rng.random(len(kind)) * 0.5  # normals below every defect
    everyone = np.arange(len(kind))
    return {"approaches": {n: {**e.metrics(everyone), "intervals95": e.intervals(200, 0)} for n, e in enc.items()},
            "stage1": {"auroc": image_auroc(kind != 2, stage1), "ci95": image_auroc_interval(kind, stage1, 200, 0)},
            "versus": paired_difference(enc["first"], enc["second"], ("three_outcome_accuracy", "normal_pass_rate"),
                                        kind, 200, 0)}


def _stage1_indomain_case() -> dict:
    from osd.patchcore.fit import indomain_rates

    rng = np.random.default_rng(11)
    pos, neg = rng.normal(3.0, 0.3, 25) + 2.0, rng.normal(1.0, 0.3, 30)
    return {"rates": indomain_rates({"defect": pos, "negative": neg, "clean": neg[:5]}, 1.4)}


def _indomain_interval_case() -> dict:
    from osd.patchcore.fit import auroc_interval

    rng = np.random.default_rng(11)
    pos, neg = rng.normal(3.0, 0.3, 25) + 2.0, rng.normal(1.0, 0.3, 30)
    near = rng.normal(1.5, 0.5, 25)
    return {"separated": auroc_interval(pos, neg), "overlap": auroc_interval(near, neg)}


def _versions() -> dict[str, str]:
    from osd.pipeline.cascade import CASCADE_ALGORITHM
    from osd.pipeline.detection import DETECTION_ALGORITHM
    from osd.pipeline.detector import ALGORITHM as PATCHCORE_ALGORITHM
    from osd.pipeline.detector import INDOMAIN_INTERVAL
    from osd.pipeline.osr import EVALUATE_ALGORITHM
    from osd.pipeline.outcomes import OUTCOMES_ALGORITHM

    return {"osr": EVALUATE_ALGORITHM, "cascade": CASCADE_ALGORITHM, "detection": DETECTION_ALGORITHM,
            "outcomes": OUTCOMES_ALGORITHM, "patchcore fit": PATCHCORE_ALGORITHM,
            "in-domain interval (a view of the fit)": INDOMAIN_INTERVAL}


# (step, its algorithm version) -> the digest of what its library functions return on the cases above
PINNED = {
    ("osr", "osr/12"): "217fe5a9477f58a4",
    ("cascade", "cascade/8"): "217fe5a9477f58a4",
    ("detection", "detection/4"): "bf091d384d69d262",
    ("outcomes", "three-outcome/6"): "9d2e5a316d88d53d",
    ("patchcore fit", "patchcore/7"): "ee0227196243659c",
    ("in-domain interval (a view of the fit)", "indomain-interval/2"): "b86c54455f01ee7b",
}
CASES = {"osr": _open_set_case, "cascade": _open_set_case, "detection": _detection_case,
         "outcomes": _three_outcome_case, "patchcore fit": _stage1_indomain_case,
         "in-domain interval (a view of the fit)": _indomain_interval_case}


def test_each_step_s_output_is_pinned_to_its_algorithm_version():
    versions = _versions()
    changed = []
    for step, version in versions.items():
        got = digest(CASES[step]())
        if PINNED.get((step, version)) != got:
            changed.append(f"{step}: {version} now computes {got} (pinned: {PINNED.get((step, version), 'nothing')}); "
                           "bump its version and pin the new digest")
    assert not changed, "\n".join(changed)


def test_the_digest_sees_a_zero_width_interval_come_back():
    """The check can fail: an interval the current code drops (zero width) changes the digest."""
    from osd.detection import evaluate

    rng = np.random.default_rng(3)
    r = evaluate(rng.normal(1.0, 0.2, 40), rng.normal(5.0, 0.2, 60), 1.5, n_boot=200, seed=0).to_dict()
    # a perfect separation: the exact bound [0.025^(1/min(m, n)), 1], never [1, 1]; AUPR's bootstrap (every
    # replicate 1 up to rounding) is left out
    assert r["intervals95"]["auroc"] == [pytest.approx(0.025 ** (1 / 40)), 1.0]
    assert "aupr" not in r["intervals95"]
    assert digest({**r, "intervals95": {**r["intervals95"], "auroc": [1.0, 1.0]}}) != digest(r)
