"""`osd predict` throughput against what `osd bench` measures for the same models.

    python examples/bench_predict.py path/to/project [--split a] [--images 256]

Bench's two-stage throughput (batch ``bench.batch_size``, images decoded once) is the reference:
predict does the same forward passes per image (classifier, PatchCore) plus decoding, the
Mahalanobis score and the rows. Prints both in images/s and their ratio. Run it alone.
"""

from __future__ import annotations

import argparse
import time

from osd import config
from osd.pipeline.bench import bench
from osd.pipeline.data import split_manifest
from osd.pipeline.predict import Predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project")
    ap.add_argument("--split", default="a")
    ap.add_argument("--images", type=int, default=256)
    a = ap.parse_args()
    cfg = config.load(a.project)
    ref = bench(cfg, a.split)
    paths = [e.path for e in split_manifest(cfg, a.split).test()]
    paths = (paths * (a.images // len(paths) + 1))[: a.images]
    predictor = Predictor(cfg, a.split, "both")
    list(predictor.predict(paths[: cfg.bench.batch_size], cfg.bench.batch_size))  # warm-up
    t = time.perf_counter()
    n = sum(1 for _ in predictor.predict(paths, cfg.bench.batch_size))
    tp = n / (time.perf_counter() - t)
    b = ref["two_stage"]["throughput_images_per_s"]
    print(f"bench two-stage: {b:.2f} images/s (batch {cfg.bench.batch_size}, decoded once)")
    print(f"predict, both approaches, {n} images from disk: {tp:.2f} images/s")
    print(f"ratio predict / bench: {tp / b:.2f}")


if __name__ == "__main__":
    main()
