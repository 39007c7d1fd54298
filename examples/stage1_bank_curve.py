"""Stage 1 in-domain: how PatchCore's AUROC on defective Severstal crops grows with the bank.

    python examples/stage1_bank_curve.py path/to/project [5,10,14]

For each bank size (number of normal strips in the memory bank, a seeded sample of the bank
partition), PatchCore is fitted with the project's settings in outputs/bank_<n>/ and tested on
the crops of the defective Severstal images, labelled by their train.csv masks. The calibration
and test normals are the same for every size, so only the bank changes.
"""

from __future__ import annotations

import sys

from osd import config
from osd.pipeline.detector import stage1_fit
from osd.pipeline.job import Job


def main(project: str, sizes: list[int]) -> None:
    cfg = config.load(project)
    print("bank strips | bank crops | patches in bank | in-domain AUROC | detection | false alarms | weights")
    for n in sizes:
        c = cfg.replace(**{"patchcore.max_bank_images": n, "project.output_dir": f"{cfg.project.output_dir}/bank_{n}"})
        r = stage1_fit(Job.of(c))
        d = r.indomain
        print(f"{r.stats['bank_images']:>11} | {r.stats['bank_crops']:>10} | {r.stats['patches_after']:>15} | "
              f"{d.get('auroc') or float('nan'):>15.3f} | {d.get('detection_rate') or 0:>9.3f} | "
              f"{d.get('false_alarm_rate') or 0:>12.3f} | {r.stats['weights']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".",
         [int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "5,10,14").split(",")])
