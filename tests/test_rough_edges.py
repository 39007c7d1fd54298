"""Rough edges found tried as a new user would (the 'nothing silently wrong' issue)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from osd.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("doc,words", [([], "a list"), ("x", "a string"), (None, "null")])
def test_a_metrics_file_that_is_not_an_object_is_named_in_words(tmp_path: Path, doc, words: str):
    from osd.report.build import read_metrics

    p = tmp_path / "metrics.json"
    p.write_text(json.dumps(doc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_metrics(p, "a") == {}
    text = " ".join(str(w.message) for w in caught)
    assert f"found {words}" in text and "NoneType" not in text and "JSON str" not in text


def test_a_failed_init_leaves_no_folder_behind(tmp_path: Path):
    one = tmp_path / "defects" / "crack"
    one.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("L", (20, 20), 100 + i).save(one / f"{i}.png")
    target = tmp_path / "proj"
    r = runner.invoke(app, ["init", str(target), "--neu", str(tmp_path / "defects")])
    assert r.exit_code != 0
    assert not target.exists()


def test_an_absent_device_names_the_setting():
    import torch

    from osd.errors import DeviceError
    from osd.runtime import resolve_device

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(DeviceError, match=r"^project.device = cuda"):
        resolve_device("cuda")
