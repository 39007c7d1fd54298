"""The house stays as drawn: a module imports only from lower floors (lazy imports inside functions
count too); docs/design.md lists the floors."""

from __future__ import annotations

import ast
from pathlib import Path

FLOORS = {
    0: ["osd._version", "osd.errors", "osd.progress", "osd.types"],
    1: ["osd.decide", "osd.config", "osd.precision", "osd.identity", "osd.proportion", "osd.csvrows", "osd.api_args",
        "osd.ranking_intervals", "osd.calibration_check", "osd.design_interval", "osd.control_chart"],
    2: ["osd.metrics", "osd.artifacts", "osd.runtime", "osd.osr", "osd.data"],
    3: ["osd.three_outcome", "osd.verdict", "osd.detection", "osd.models", "osd.records", "osd.patchcore",
        "osd.monitor"],
    4: ["osd.pipeline", "osd.project"],
    5: ["osd.report"],
    6: ["osd.study"],
    7: ["osd.api"],
    8: ["osd.cli"],
    9: ["osd.__main__"],
    # the package itself is the API's front door (osd.Project, loaded on first use); nothing imports it whole:
    # `from osd import artifacts` names a room of its own, the version is osd._version
    10: ["osd"],
}
ROOM = {room: floor for floor, rooms in FLOORS.items() for room in rooms}
PACKAGE = Path(__file__).resolve().parents[1] / "osd"


def room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "osd":
            out |= {node.module} if node.module != "osd" else {f"osd.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "osd"}
    return out


def test_every_module_has_a_floor_and_imports_only_from_below():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        here = room(module)
        assert here in ROOM, f"{module}: no floor in tests/test_layers.py (and docs/design.md)"
        for target in imports(path):
            there = room(target)
            if there == here:
                continue
            if ROOM.get(there, 99) >= ROOM[here]:
                bad.append(f"{module} (floor {ROOM[here]}) imports {target} (floor {ROOM.get(there)})")
    assert not bad, "\n".join(bad)


def test_the_check_catches_an_import_from_above(tmp_path: Path):
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from osd.cli.app import app\n")
    assert imports(p) == {"osd.cli.app"} and ROOM[room("osd.cli.app")] > ROOM["osd.pipeline"]


def test_patchcore_unfitted_raises_scikit_learns_not_fitted_error():
    import pytest
    import torch
    from sklearn.exceptions import NotFittedError

    from osd.patchcore.model import PatchCore

    with pytest.raises(NotFittedError):
        PatchCore().score_samples(torch.zeros(1, 4, 2, 2))
