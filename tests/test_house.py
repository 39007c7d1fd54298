"""Issue 41: what the house reached stays. No function over 60 lines, no module over 450, no step under
osd/pipeline that takes a whole Config (only the grid, which resolves each job, and the resolver), one
place for the CLI's shared options."""

from __future__ import annotations

import ast
from pathlib import Path

OSD = Path(__file__).resolve().parent.parent / "osd"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(OSD.rglob("*.py"))]


def test_no_function_over_60_lines_and_no_module_over_450():
    long_functions = [f"{p.relative_to(OSD)}:{n.name} ({n.end_lineno - n.lineno + 1})" for p, tree in _modules()
                      for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.end_lineno - n.lineno + 1 > 60]
    assert long_functions == []
    long_modules = [f"{p.relative_to(OSD)} ({n})" for p, _ in _modules()
                    if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450]
    assert long_modules == []


def test_no_pipeline_step_takes_a_config():
    """Steps take the resolved job (osd.pipeline.job.Job); a Config is taken only where a job is resolved:
    the grid (one study config, a job per task) and the resolver's own data functions."""
    allowed = {"grid.py", "data.py", "job.py"}
    taking = []
    for p, tree in _modules():
        if p.parent.name != "pipeline" or p.name in allowed:
            continue
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for a in [*n.args.args, *n.args.kwonlyargs]:
                    if a.annotation is not None and "Config" in ast.unparse(a.annotation):
                        taking.append(f"{p.name}:{n.name}({a.arg})")
    assert taking == []


def test_the_cli_declares_the_shared_options_in_one_place():
    """--project, --set, --debug and --json are added by osd.cli.shared.on_project; a command module
    spells them out only where no project may be opened (monitor --export-dir, on an inspection PC)."""
    spelled = {}
    for p in sorted((OSD / "cli").glob("*_commands.py")):
        text = p.read_text(encoding="utf-8")
        spelled[p.name] = text.count("project: o.Project")
    assert spelled == {"line_commands.py": 1, "study_commands.py": 0}
