"""Memory and speed against the data set's size: one training epoch, the embedding step and predict.

    python examples/bench_scale.py [--sizes 1000,4000,16000] [--classes 8] [--image-size 64]
        [--arch tf_efficientnet_lite0] [--workers 2] [--threads 2] [--keep DIR]

Synthetic class folders of N images (256 x 256 JPEG, the demo's defect generator's texture, one
stripe per class) are written once per N; then, in a fresh process per N (so its peak RSS is its
own): `osd init --neu` + one training epoch (`osd train`, classifier.epochs = 1) + `osd embed`, and
`osd predict` on the split's test images. It prints, per N, the peak RSS and images/s of each step,
and the ratios against N = the smallest size and against the bare model step (forward/backward on
already-decoded tensors, forward for embedding). Run it alone: a second busy process halves both.
Targets (issue 18): peak RSS at 16,000 within 1.25x of that at 1,000; images/s flat within 10%.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
from typer.testing import CliRunner
from osd.pipeline.job import Job
from osd.cli.app import app

proj, sets, n_threads = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(n_threads)
runner = CliRunner()
step = sys.argv[4]
t = time.perf_counter()
if step == "train":
    r = runner.invoke(app, ["train", "-p", str(proj), "--split", "a", *sets, "--json"])
elif step == "embed":
    r = runner.invoke(app, ["embed", "-p", str(proj), "--split", "a", *sets, "--json"])
elif step == "calibrate":  # predict needs tau; in a process of its own, so predict's peak is predict's
    r = runner.invoke(app, ["calibrate", "-p", str(proj), "--split", "a", *sets, "--json"])
else:  # the library call osd predict makes, timed from the first row on (models built before)
    import csv
    from osd import config
    from osd.pipeline.predict import COLUMNS, Predictor, expand_inputs

    overrides = [sets[i + 1] for i in range(0, len(sets), 2)]
    pred = Predictor(Job.of(config.load(proj, overrides)), "a", "one-stage")
    inputs = list(expand_inputs([proj / "test.txt"]))
    t = time.perf_counter()
    with open(proj / "rows.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS), extrasaction="ignore")
        for row in pred.predict(inputs, 16):
            assert row["status"] == "ok"
            w.writerow(row)
    r = type("R", (), {"exit_code": 0, "output": ""})()
assert r.exit_code == 0, r.output
seconds = time.perf_counter() - t
if step == "train":  # the epoch itself (training + the epoch-selection pass), from the history
    seconds = json.loads((proj / "outputs" / "split_a" / "classifier" / "history.json").read_text())[-1]["seconds"]
elif step == "embed":
    seconds = None  # images / s comes from the step's own result
print(json.dumps({"seconds": seconds, "result": json.loads(r.stdout) if step == "embed" else None,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BARE = r"""
import json, sys, time
import torch
from osd.models.backbones import build
from osd.models.classifier import EmbeddingClassifier
arch, weights, size, classes, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = EmbeddingClassifier(build(arch, weights), classes)
x = torch.randn(32, 3, size, size)
y = torch.arange(32) % classes
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
model.train()
for _ in range(2):
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
t = time.perf_counter(); reps = 10
for _ in range(reps):
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
train = 32 * reps / (time.perf_counter() - t)
model.eval()
with torch.no_grad():
    model.embed_stages(x)
    t = time.perf_counter()
    for _ in range(reps):
        model.embed_stages(x)
fwd = 32 * reps / (time.perf_counter() - t)
print(json.dumps({"train": train, "forward": fwd}))
"""


def write_folders(root: Path, n: int, classes: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    per = n // classes
    for c in range(classes):
        d = root / f"class {c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            a = rng.normal(120, 12, (256, 256))
            a[:, 20 * c : 20 * c + 8] = 40
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(d / f"img_{i}.jpg", quality=85)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,4000,16000")
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--arch", default="tf_efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", default=None, help="folder for the data and projects (default: a temporary one)")
    a = ap.parse_args()
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="osd-scale-"))
    sets = ["--set", f"classifier.arch={a.arch}", "--set", f"classifier.weights={a.weights}",
            "--set", f"classifier.image_size={a.image_size}", "--set", "classifier.epochs=1",
            "--set", "stats.bootstrap=0", "--set", f"project.workers={a.workers}",
            "--set", f"project.threads={a.threads}"]
    bare = json.loads(subprocess.run([sys.executable, "-c", BARE, a.arch, a.weights, str(a.image_size),
                                      str(a.classes - 2), str(a.threads)], capture_output=True, text=True,
                                     check=True).stdout)
    print(f"bare model step ({a.arch}, {a.weights}, {a.image_size} px, batch 32, {a.threads} threads): "
          f"train {bare['train']:.0f} images/s, forward {bare['forward']:.0f} images/s")
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        data, proj = tmp / f"data_{n}", tmp / f"proj_{n}"
        if not data.is_dir():
            t = time.perf_counter()
            write_folders(data, n, a.classes)
            print(f"N = {n}: wrote the folders in {time.perf_counter() - t:.0f} s")
        if not proj.is_dir():
            subprocess.run([sys.executable, "-m", "osd", "init", str(proj), "--neu", str(data), "--unknown-per-split",
                            "2"], check=True, capture_output=True)
        manifest = None
        row = {"N": n}
        for step in ("train", "embed", "calibrate", "predict"):
            if step == "predict":
                import csv

                manifest = list(csv.DictReader((proj / "outputs" / "split_a" / "split_manifest.csv").open()))
                test = [str(data / r["path"]) for r in manifest if r["partition"] == "test"]
                (proj / "test.txt").write_text("\n".join(test) + "\n")
            out = subprocess.run([sys.executable, "-c", CHILD, str(proj), json.dumps(sets), str(a.threads), step],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:])
                raise SystemExit(f"{step} failed for N = {n}")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            if step == "calibrate":
                continue
            manifest = manifest or list(__import__("csv").DictReader(
                (proj / "outputs" / "split_a" / "split_manifest.csv").open()))
            parts = {}
            for r in manifest:
                parts[r["partition"]] = parts.get(r["partition"], 0) + 1
            images = {"train": parts.get("train", 0) + parts.get("epoch_select", 0),
                      "embed": len(manifest) - parts.get("epoch_select", 0),
                      "predict": parts.get("test", 0)}[step]
            rate = res["result"]["images_per_second"] if step == "embed" else images / res["seconds"]
            row[step] = {"images": images, "images_per_s": rate, "peak_rss_mb": res["peak_rss_mb"]}
        rows.append(row)
    base = rows[0]
    print()
    n0 = base["N"]
    print(f"| N | step | images | images/s | vs N={n0} | vs bare step | peak RSS MB | vs N={n0} |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        for step, ref in (("train", bare["train"]), ("embed", bare["forward"]), ("predict", bare["forward"])):
            s, b = r[step], base[step]
            print(f"| {r['N']} | {step} | {s['images']} | {s['images_per_s']:.0f} | "
                  f"{s['images_per_s'] / b['images_per_s']:.2f} | {s['images_per_s'] / ref:.2f} | "
                  f"{s['peak_rss_mb']:.0f} | {s['peak_rss_mb'] / b['peak_rss_mb']:.2f} |")
    print(f"\n(files kept in {tmp})" if a.keep else "")


if __name__ == "__main__":
    main()
