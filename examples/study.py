"""The whole study through the library, as one would run it from a notebook.

    python examples/study.py path/to/project [a,b,c]

The same functions the commands call; progress is silent (pass a reporter to see it).
"""

from __future__ import annotations

import sys

from osd import config
from osd.pipeline.cascade import run_cascade
from osd.pipeline.detector import stage1_fit
from osd.pipeline.job import Job
from osd.pipeline.osr import evaluate
from osd.pipeline.train import train
from osd.report.build import build_report


def main(project: str, splits: list[str]) -> None:
    cfg = config.load(project)  # add overrides: config.load(project, ["classifier.epochs=5"])
    stage1 = stage1_fit(Job.of(cfg))
    print(f"PatchCore threshold {stage1.threshold:.4g}, false-alarm rate {stage1.false_alarm_rate:.3f}")
    for split in splits:
        t = train(Job.of(cfg), split)
        one = evaluate(Job.of(cfg), split)
        two = run_cascade(Job.of(cfg), split)
        print(f"split {split}: best epoch {t.best_epoch}, closed-set acc {one.osr['closed_set_accuracy']:.3f}, "
              f"Mahalanobis AUROC {one.osr['auroc']:.3f}, cascade open-set acc "
              f"{two.modes['ignore_no_defect']['open_set_accuracy']:.3f}")
    report = build_report(cfg, splits)
    print("report:", report.report_html)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".", (sys.argv[2] if len(sys.argv) > 2 else "a,b,c").split(","))
