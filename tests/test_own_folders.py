"""Issue 18: a user's own class folders as they are: names kept, splits right, nested folders,
reserved names, cross-class duplicates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from osd.cli.app import app

runner = CliRunner()
TINY = ["--set", "classifier.arch=resnet18", "--set", "classifier.weights=none", "--set", "classifier.image_size=32",
        "--set", "classifier.epochs=1", "--set", "stats.bootstrap=10"]


def folders(root: Path, names: list[str], per_class: int = 12, nested: dict[str, int] | None = None) -> Path:
    """One folder per class of ``img_N.jpg`` files (nothing looks like NEU file naming)."""
    rng = np.random.default_rng(0)
    for ci, name in enumerate(names):
        for i in range(per_class):
            a = rng.normal(120, 10, (32, 32))
            a[:, (ci * 3) % 30 : (ci * 3) % 30 + 2] = 30
            d = root / name
            if nested and i < nested.get(name, 0):
                d = d / "2024"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(d / f"img_{i}.jpg")
    return root


def _init(tmp_path: Path, data: Path, ups: int) -> tuple[int, str]:
    r = runner.invoke(app, ["init", str(tmp_path / "p"), "--neu", str(data), "--unknown-per-split", str(ups)])
    return r.exit_code, r.output


def _check(tmp_path: Path) -> tuple[int, dict]:
    r = runner.invoke(app, ["data", "check", "-p", str(tmp_path / "p"), "--json"])
    return r.exit_code, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {"output": r.output})


def test_four_own_classes_give_exactly_the_splits_init_printed(tmp_path: Path):
    """The phantom split: NEU's default split c must not join a user's project."""
    names = ["oil spot", "weld line", "dent", "scale"]
    code, out = _init(tmp_path, folders(tmp_path / "d", names), 2)
    assert code == 0, out
    code, rep = _check(tmp_path)
    assert code == 0, rep
    assert sorted(rep["splits"]) == ["a", "b"] and rep["ok"]
    assert sorted(c for s in rep["splits"].values() for c in s["unknown"]) == sorted(names)


@pytest.mark.parametrize("n,ups", [(3, 1), (4, 1), (4, 2), (7, 2), (7, 3), (12, 3), (12, 1)])
def test_any_class_count_and_unknown_per_split(tmp_path: Path, n: int, ups: int):
    names = [f"class {i:02d}" for i in range(n)]
    code, out = _init(tmp_path, folders(tmp_path / "d", names, per_class=10), ups)
    assert code == 0, out
    code, rep = _check(tmp_path)
    assert code == 0 and rep["ok"], rep
    assert len(rep["splits"]) == -(-n // ups)  # ceil(n / ups) splits, each class unknown once
    assert sorted(c for s in rep["splits"].values() for c in s["unknown"]) == sorted(names)
    assert set(rep["neu_counts"]) == set(names)
    if (n, ups) in ((3, 1), (12, 3)):  # the smallest and the largest class count through a tiny study too
        r = runner.invoke(app, ["run-all", "-p", str(tmp_path / "p"), "--splits", "a", *TINY, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["report"]["rows"][0]["split"] == "a"


def test_a_project_with_a_single_split(tmp_path: Path):
    data = folders(tmp_path / "d", ["dent", "rust", "scale", "pit"])
    code, out = _init(tmp_path, data, 2)
    assert code == 0, out
    toml = tmp_path / "p" / "osd.toml"
    text = toml.read_text()
    toml.write_text(text[: text.index("[splits.a]")] + '[splits.only]\nknown = ["dent", "rust", "scale"]\n'
                    'unknown = ["pit"]\n' + text[text.index("[classifier]"):])
    code, rep = _check(tmp_path)
    assert code == 0 and list(rep["splits"]) == ["only"], rep
    r = runner.invoke(app, ["run-all", "-p", str(tmp_path / "p"), *TINY, "--json"])
    assert r.exit_code == 0, r.output
    assert {row["split"] for row in json.loads(r.stdout)["report"]["rows"]} >= {"only"}


def test_two_classes_cannot_make_an_open_set_split_and_say_so(tmp_path: Path):
    code, out = _init(tmp_path, folders(tmp_path / "d", ["dent", "rust"]), 1)
    assert code == 1 and "2 defect classes (dent, rust) found" in out and "at least 3" in out and "Traceback" not in out


def test_folder_names_are_kept_verbatim(tmp_path: Path):
    names = ["Scratch", "Patch", "In", "oil spot"]
    code, out = _init(tmp_path, folders(tmp_path / "d", names), 2)
    assert code == 0, out
    _, rep = _check(tmp_path)
    assert sorted(rep["neu_counts"]) == sorted(names)  # not renamed to scratches, patches, inclusion


def test_neu_in_class_folders_still_maps_to_neu_classes(tmp_path: Path):
    names = ["Crazing", "Inclusion", "Patches", "Pitted", "Rolled", "Scratches"]
    from osd.data.neu import index_neu

    index = index_neu(folders(tmp_path / "d", names, per_class=2))
    assert index.classes == ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def test_a_subfolder_belongs_to_its_class_folder(tmp_path: Path):
    data = folders(tmp_path / "d", ["dent", "rust", "scale", "pit"], per_class=30, nested={"dent": 11})
    code, out = _init(tmp_path, data, 2)
    assert code == 0, out
    _, rep = _check(tmp_path)
    assert rep["neu_counts"]["dent"] == 30 and "2024" not in rep["neu_counts"]
    assert rep["class_folders"]["dent"] == ["dent", "dent/2024"]


@pytest.mark.parametrize("reserved", ["unknown", "no_defect"])
def test_a_class_named_like_a_decision_label_is_refused(tmp_path: Path, reserved: str):
    data = folders(tmp_path / "d", ["dent", "rust", "scale", reserved])
    code, out = _init(tmp_path, data, 1)
    assert code == 1 and "decision label" in out and reserved in out and "Traceback" not in out


def test_byte_identical_images_in_two_classes_are_an_error(tmp_path: Path):
    data = folders(tmp_path / "d", ["dent", "rust", "scale", "pit"])
    shutil.copy(data / "dent" / "img_0.jpg", data / "rust" / "img_99.jpg")
    code, out = _init(tmp_path, data, 2)
    assert code == 0, out
    code, rep = _check(tmp_path)
    assert code == 1 and any("byte-identical images in different classes" in p for p in rep["problems"])
    r = runner.invoke(app, ["run-all", "-p", str(tmp_path / "p"), *TINY])
    assert r.exit_code == 1 and "byte-identical" in r.output and "Traceback" not in r.output


def test_own_folders_run_the_study_end_to_end(tmp_path: Path):
    """Four own classes with a nested folder and mixed sizes: init, data check and a tiny run-all."""
    data = folders(tmp_path / "d", ["oil spot", "weld line", "dent", "scale"], per_class=14, nested={"dent": 5})
    Image.fromarray(np.full((24, 48), 90, np.uint8)).save(data / "scale" / "img_wide.jpg")  # 2:1, another size
    code, out = _init(tmp_path, data, 2)
    assert code == 0, out
    r = runner.invoke(app, ["run-all", "-p", str(tmp_path / "p"), *TINY, "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert {row["split"] for row in res["report"]["rows"]} >= {"a", "b"}
    m = json.loads((tmp_path / "p" / "outputs" / "split_a" / "metrics.json").read_text())
    assert set(m["osr"]["data"]["known"]) | set(m["osr"]["data"]["unknown"]) == {"oil spot", "weld line", "dent",
                                                                                  "scale"}
