"""The whole study through the library's front door, as one would run it from a notebook.

    python examples/study.py path/to/project [a,b,c]

``osd.Project`` is the public API the commands call (each method one step, returning its record); the
modules under ``osd.pipeline`` are its private rooms. Progress is silent (``osd.Project(path,
reporter=osd.LineReporter(print))`` shows it).
"""

from __future__ import annotations

import sys

import osd


def main(project: str, splits: list[str]) -> None:
    p = osd.Project(project)  # add overrides: osd.Project(project, ["classifier.epochs=5"])
    stage1 = p.patchcore_fit()
    print(f"PatchCore threshold {stage1.threshold:.4g}, false-alarm rate {stage1.false_alarm_rate:.3f}")
    for split in splits:
        t = p.train(split)
        one = p.osr(split)
        two = p.cascade(split)
        print(f"split {split}: best epoch {t.best_epoch}, closed-set acc {one.osr['closed_set_accuracy']:.3f}, "
              f"Mahalanobis AUROC {one.osr['auroc']:.3f}, cascade open-set acc "
              f"{two.modes['ignore_no_defect']['open_set_accuracy']:.3f}")
    report = p.report(splits)
    print("report:", report.report_html)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".", (sys.argv[2] if len(sys.argv) > 2 else "a,b,c").split(","))
