"""What the ODIN baseline costs on this machine (issue 21): per image, a forward and a backward
to the input (the perturbation) and a second forward, against a plain forward.

    python examples/bench_odin_cost.py [--threads 2] [--batch 32]

Lite0 with the offline ImageNet weights at 224 px, temperature 1000, eps 0.0014 (ODIN's defaults;
tuning them needs out-of-distribution images, which the study keeps out of every choice). Run alone.
"""

from __future__ import annotations

import argparse
import time

import torch

from osd.data.tensors import IMAGENET_MEAN, IMAGENET_STD
from osd.models.backbones import build
from osd.models.classifier import EmbeddingClassifier
from osd.models.odin import odin_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net = EmbeddingClassifier(build("tf_efficientnet_lite0", "imagenet"), 4).eval().requires_grad_(False)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    norm = lambda p: (p - mean) / std  # noqa: E731
    x = torch.rand(a.batch, 3, 224, 224)
    odin_scores(net, x[:4], norm)  # warm-up
    t = time.perf_counter()
    odin_scores(net, x, norm)  # what the odin step runs per batch
    odin = time.perf_counter() - t
    with torch.no_grad():
        t = time.perf_counter()
        net(norm(x))
        plain = time.perf_counter() - t
    print(f"ODIN {odin / a.batch * 1000:.0f} ms/image, plain forward {plain / a.batch * 1000:.0f} ms/image, "
          f"ratio {odin / plain:.1f}x; 600 validation + test images per run: {odin / a.batch * 600:.0f} s")


if __name__ == "__main__":
    main()
