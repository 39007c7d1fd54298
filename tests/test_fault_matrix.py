"""Issue 13: the bad-input and fault matrix, one case a row, through the command line.

Every case asserts: exit code 1, exactly one ``error:`` line that names the file or the setting,
no traceback, and nothing lost (no partial artifact, earlier results still there).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from osd.cli.app import app

runner = CliRunner()


def _toml(p: Path, old: str, new: str) -> None:
    f = p / "osd.toml"
    f.write_text(f.read_text().replace(old, new))


def _append(p: Path, text: str) -> None:
    with (p / "osd.toml").open("a") as fh:
        fh.write(text)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _empty_root(p: Path) -> None:
    (p / "empty").mkdir()
    _toml(p, 'root = "neu"', 'root = "empty"')


# (case id, how to break the project, command, what the one line must name)
CASES: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    # config
    ("toml syntax", lambda p: _append(p, "\n[classifier\n"), ["train"], "not valid TOML"),
    ("unknown key with suggestion", lambda p: _append(p, "\n[cascade]\nuse_kapa = true\n"), ["train"],
     "did you mean 'cascade.use_kappa'"),
    ("unknown section", lambda p: _append(p, "\n[classifer]\n"), ["train"], "classifer"),
    ("wrong type", lambda p: _toml(p, "epochs = 2", "epochs = 'two'"), ["train"], "classifier.epochs"),
    ("out of range", lambda p: _toml(p, "batch_size = 8", "batch_size = 0"), ["train"], "classifier.batch_size"),
    ("bad choice", lambda p: _append(p, "\n[osr]\nfeatures = 'all'\n"), ["osr"], "osr.features"),
    ("class both known and unknown", lambda p: _append(p, "\n[splits.a]\nunknown = ['inclusion']\n"), ["train"],
     "splits.a"),
    ("split class not in the data", lambda p: _append(p, "\n[splits.a]\nunknown = ['rust']\n"), ["train"], "rust"),
    ("unknown split", lambda p: None, ["train", "--split", "zz"], "unknown split 'zz'"),
    ("--set without value", lambda p: None, ["train", "--set", "classifier.epochs"], "expected KEY=VALUE"),
    ("--set unknown key", lambda p: None, ["train", "--set", "classifier.epoch=3"], "classifier.epoch"),
    ("--seeds not integers", lambda p: None, ["run-all", "--seeds", "0,x"], "--seeds"),
    ("missing device", lambda p: None, ["train", "--device", "cuda"], "CUDA"),
    # models
    ("classifier cannot run at this size", lambda p: None,
     ["train", "--set", "classifier.arch=vit_b_16"], "classifier.arch = 'vit_b_16' cannot run"),
    ("classifier name unknown", lambda p: None, ["train", "--set", "classifier.arch=resnet_999"], "classifier.arch"),
    ("patchcore backbone without patch layers", lambda p: None,
     ["patchcore", "fit", "--set", "patchcore.backbone=mobilenet_v3_small"], "patchcore.backbone"),
    ("patchcore layer the backbone lacks", lambda p: None,
     ["patchcore", "fit", "--set", "patchcore.backbone=tf_efficientnet_lite0", "--set", "patchcore.layers=['layer5']"],
     "patchcore.layers"),
    # weights
    ("weights file missing", lambda p: None, ["train", "--set", "classifier.weights=nothere.pth"], "nothere.pth"),
    ("weights file of random bytes", lambda p: _write(p / "w.pth", b"\x00junk" * 99),
     ["train", "--set", "classifier.weights=w.pth"], "w.pth"),
    ("weights file an arbitrary pickle", lambda p: _write(p / "w.pth", pickle.dumps({"a": Path("x")})),
     ["train", "--set", "classifier.weights=w.pth"], "w.pth"),
    # data
    ("NEU folder missing", lambda p: _toml(p, 'root = "neu"', 'root = "gone"'), ["train"], "gone"),
    ("NEU folder without images", lambda p: _empty_root(p),
     ["train"], "no image files"),
    ("severstal folder missing", lambda p: _toml(p, 'severstal_root = "sev"', 'severstal_root = "nosev"'),
     ["patchcore", "fit"], "nosev"),
    ("train.csv missing", lambda p: (p / "sev" / "train.csv").unlink(), ["patchcore", "fit"], "train.csv"),
    ("train.csv with a non-integer ClassId",
     lambda p: _write(p / "sev" / "train.csv", b"ImageId,ClassId,EncodedPixels\n00006.jpg,x,1 10\n"),
     ["patchcore", "fit"], "line 2: ClassId 'x'"),
    ("train.csv without header", lambda p: _write(p / "sev" / "train.csv", b"00006.jpg,3," + b"1 2 " * 700),
     ["patchcore", "fit"], "is not a header"),
    ("both normal sources", lambda p: _toml(p, 'severstal_root = "sev"', 'severstal_root = "sev"\nfolder = "x"'),
     ["patchcore", "fit"], "normal.folder"),
    # outputs
    ("output folder is a file", lambda p: _write(p / "o", b"x"), ["train", "--set", "project.output_dir=o"],
     "cannot write"),
    # artifacts
    ("no results for the report", lambda p: None, ["report"], "no results yet"),
    ("predict before training", lambda p: None, ["predict", "neu"], "osd train --split a"),
]


@pytest.mark.parametrize("case, breaks, command, needle", CASES, ids=[c[0] for c in CASES])
def test_fault_matrix(tiny_project: Path, case: str, breaks: Callable[[Path], None], command: list[str],
                      needle: str):
    breaks(tiny_project)
    r = runner.invoke(app, [*command, "-p", str(tiny_project)])
    assert r.exit_code == 1, (case, r.output)
    assert "Traceback" not in r.output, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.output
    assert needle in r.output, (case, r.output)
    assert not list(tiny_project.rglob("*.tmp")), "a temporary was left behind"


def test_cache_corruption_and_interruption_lose_nothing(tiny_project: Path):
    p = str(tiny_project)
    assert runner.invoke(app, ["osr", "-p", p, "--split", "a"]).exit_code == 0
    out = tiny_project / "outputs" / "split_a"
    metrics_before = (out / "metrics.json").read_text()
    (out / "embeddings" / "embeddings.npz").write_bytes(b"broken")  # a corrupt cache entry
    r = runner.invoke(app, ["osr", "-p", p, "--split", "a"])
    assert r.exit_code == 0 and "unreadable cache entry" in r.output and "recomputing" in r.output
    assert (out / "classifier" / "model.npz").is_file()  # the model was not retrained or lost
    assert "osr" in metrics_before and (out / "metrics.json").is_file()


def test_an_interrupt_is_one_line_and_keeps_finished_steps(tiny_project: Path, monkeypatch):
    from osd.pipeline import osr

    p = str(tiny_project)
    assert runner.invoke(app, ["train", "-p", p, "--split", "a"]).exit_code == 0

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(osr, "fit_scorer", interrupted)
    r = runner.invoke(app, ["osr", "-p", p, "--split", "a"])
    assert r.exit_code == 130 and "Traceback" not in r.output and "finished steps are kept" in r.output
    assert (tiny_project / "outputs" / "split_a" / "classifier" / "model.npz").is_file()
    assert (tiny_project / "outputs" / "split_a" / "embeddings" / "embeddings.npz").is_file()
