"""Fine-tuning time per epoch: osd's training loop against a bare forward/backward/step loop.

    python examples/bench_train.py --neu ../shared/data/NEU-DET [--arch tf_efficientnet_lite0]
        [--weights imagenet] [--size 224] [--images 720] [--batch 32] [--threads 2]

Both loops see the same images, batch size, optimizer and model: the bare loop on tensors decoded
beforehand, osd's streamed from disk (decoded by --workers processes while the model computes),
with its augmentation, the one-cycle schedule, the validation pass and the per-epoch checkpoint. Prints
seconds per epoch for each and the ratio. Run it alone: a second busy process halves both.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from osd import artifacts
from osd.config import ClassifierSection
from osd.data.neu import index_neu
from osd.data.stream import Images
from osd.data.tensors import load_images, normalize
from osd.models.backbones import build
from osd.models.classifier import EmbeddingClassifier
from osd.models.training import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--neu", required=True)
    ap.add_argument("--arch", default="tf_efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=720)
    ap.add_argument("--val", type=int, default=240)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="image-decoding processes of osd's loop")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    index = index_neu(a.neu)
    classes = index.classes[:4]
    paths = [p for p, lab in zip(index.paths, index.labels) if lab in classes]
    labels = [classes.index(lab) for lab in index.labels if lab in classes]
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(paths), generator=g).tolist()
    tr, va = order[: a.images], order[a.images : a.images + a.val]
    x, _ = load_images([paths[i] for i in tr], a.size)
    y = torch.tensor([labels[i] for i in tr])
    xv, _ = load_images([paths[i] for i in va], a.size)
    yv = torch.tensor([labels[i] for i in va])
    print(f"{a.arch} ({a.weights}) at {a.size} px, {len(y)} training + {len(yv)} validation images, batch {a.batch}, "
          f"{a.threads} threads")

    # bare: forward, loss, backward, step over the same batches; nothing else
    model = EmbeddingClassifier(build(a.arch, a.weights), len(classes)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(y), generator=g)
    t = time.perf_counter()
    for s in range(0, len(y), a.batch):
        idx = perm[s : s + a.batch]
        if len(idx) < 2:
            continue
        opt.zero_grad(set_to_none=True)
        loss_fn(model(normalize(x[idx])), y[idx]).backward()
        opt.step()
    bare = time.perf_counter() - t

    # osd: two epochs of the real loop (the first checkpoint written), the second one timed
    recipe = ClassifierSection(arch=a.arch, weights=a.weights, image_size=a.size, epochs=2, batch_size=a.batch)
    model = EmbeddingClassifier(build(a.arch, a.weights), len(classes))
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "checkpoint.npz"
        # osd streams the images from disk (decoded in worker processes); the bare loop had them decoded
        train = Images([paths[i] for i in tr], y, a.size, a.workers)
        select = Images([paths[i] for i in va], yv, a.size, a.workers)
        out = fit(model, train, select, recipe, torch.device("cpu"), torch.Generator().manual_seed(0),
                  checkpoint=lambda state: artifacts.save(ck, "k", state))
    epoch2 = out.history[1]["seconds"] - out.history[0]["seconds"]
    print(f"bare forward/backward/step, one pass over the training images: {bare:.1f} s")
    print(f"osd fit, one epoch (augmentation, schedule, validation, checkpoint): {epoch2:.1f} s")
    print(f"ratio osd / bare: {epoch2 / bare:.2f}")


if __name__ == "__main__":
    main()
