"""What an ODIN baseline would cost on this machine (issue 21): per image, a forward and a backward
to the input (the perturbation) and a second forward, against a plain forward.

    python examples/bench_odin_cost.py [--threads 2] [--batch 32]

Lite0 with the offline ImageNet weights at 224 px, temperature 1000, eps 0.0014 (ODIN's defaults;
tuning them needs out-of-distribution images, which the study keeps out of every choice). Run alone.
"""

from __future__ import annotations

import argparse
import time

import torch

from osd.models.backbones import build
from osd.models.classifier import EmbeddingClassifier


def odin_msp(net: torch.nn.Module, x: torch.Tensor, temperature: float = 1000.0, eps: float = 0.0014) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    logits = net(x)
    torch.nn.functional.cross_entropy(logits / temperature, logits.argmax(1)).backward()
    perturbed = x.detach() - eps * x.grad.sign()
    with torch.no_grad():
        return torch.softmax(net(perturbed) / temperature, 1).max(1).values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net = EmbeddingClassifier(build("tf_efficientnet_lite0", "imagenet"), 4).eval()
    x = torch.randn(a.batch, 3, 224, 224)
    odin_msp(net, x[:4])  # warm-up
    t = time.perf_counter()
    odin_msp(net, x)
    odin = time.perf_counter() - t
    with torch.no_grad():
        t = time.perf_counter()
        net(x)
        plain = time.perf_counter() - t
    print(f"ODIN {odin / a.batch * 1000:.0f} ms/image, plain forward {plain / a.batch * 1000:.0f} ms/image, "
          f"ratio {odin / plain:.1f}x; 600 validation + test images per run: {odin / a.batch * 600:.0f} s")


if __name__ == "__main__":
    main()
