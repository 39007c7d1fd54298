"""`osd predict` throughput against the bare model compute of the same models, as `osd bench` times it.

    python examples/bench_predict.py path/to/project [--split a] [--images 192] [--batch 16]

The reference is what ``osd bench`` calls two-stage throughput: the forward passes of the
classifier and of PatchCore (plus the Mahalanobis score) on images that are already decoded,
batch by batch. ``predict`` adds reading and decoding each file and building its row, streaming.
Both use the split's cached models (nothing is trained or fitted). Prints both in images/s and
their ratio. Run it alone.
"""

from __future__ import annotations

import argparse
import time

from osd import config
from osd.data.images import load_rgb
from osd.pipeline.job import Job
from osd.pipeline.predict import Predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project")
    ap.add_argument("--split", default="a")
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    cfg = config.load(a.project)
    paths = [e.path for e in Job.of(cfg).manifest(a.split).test()]
    paths = (paths * (a.images // len(paths) + 1))[: a.images]
    predictor = Predictor(Job.of(cfg), a.split, "both")
    list(predictor.predict(paths[: a.batch], a.batch))  # warm-up
    decoded = [load_rgb(p) for p in paths]
    t = time.perf_counter()
    for s in range(0, len(decoded), a.batch):
        predictor._rows([str(p) for p in paths[s : s + a.batch]], decoded[s : s + a.batch])
    ref = len(decoded) / (time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(1 for _ in predictor.predict(paths, a.batch))
    tp = n / (time.perf_counter() - t)
    print(f"models only (decoded images, batch {a.batch}): {ref:.2f} images/s")
    print(f"osd predict, {n} images from disk, batch {a.batch}: {tp:.2f} images/s")
    print(f"ratio predict / models only: {tp / ref:.2f}")


if __name__ == "__main__":
    main()
