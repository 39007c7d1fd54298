"""`osd predict` images/s on torch and on ONNX Runtime: the same images, threads and batch.

    python examples/bench_onnx.py PROJECT [--split a] [--images 192] [--batch 16] [--threads 2]

The split must be exported first (`osd export --split a`). Both engines decode the same files and
write the same rows; the ratio is ONNX / torch per approach (one-stage alone, and both approaches,
which adds the cascade's stage 1). Run it alone: a second busy process halves both.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from osd import config
from osd.pipeline.job import Job
from osd.pipeline.predict import Predictor


def rate(cfg, split: str, approach: str, engine: str, paths: list[Path], batch: int) -> float:
    pred = Predictor(Job.of(cfg), split, approach, engine=engine)
    list(pred.predict(paths[:batch], batch))  # warm-up: sessions, allocations
    t = time.perf_counter()
    rows = list(pred.predict(paths, batch))
    assert all(r["status"] == "ok" for r in rows)
    return len(paths) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project")
    ap.add_argument("--split", default="a")
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = config.load(Path(a.project), [f"project.threads={a.threads}"])
    paths = [e.path for e in Job.of(cfg).manifest(a.split).test()][: a.images]
    print(f"{len(paths)} test images of split {a.split}, batch {a.batch}, {a.threads} threads")
    print("| approach | torch images/s | ONNX Runtime images/s | ratio |")
    print("|---|---|---|---|")
    for approach in ("one-stage", "both"):
        t = rate(cfg, a.split, approach, "torch", paths, a.batch)
        o = rate(cfg, a.split, approach, "onnx", paths, a.batch)
        print(f"| {approach} | {t:.1f} | {o:.1f} | {o / t:.2f} |")


if __name__ == "__main__":
    main()
