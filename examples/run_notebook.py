"""Execute a notebook top to bottom in a fresh kernel; exit 1 with the failing cell when one fails.

    python examples/run_notebook.py examples/study.ipynb [--timeout 1800]

CI runs the study notebook this way (on the demo), so it cannot rot. The notebook file itself is
committed without outputs; this writes nothing back to it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile


def main() -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    ap = argparse.ArgumentParser()
    ap.add_argument("notebook")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    a = ap.parse_args()
    nb = nbformat.read(a.notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="osd-notebook-") as tmp:
        client = NotebookClient(nb, timeout=a.timeout, kernel_name="python3", resources={"metadata": {"path": tmp}})
        try:
            client.execute()
        except CellExecutionError as exc:
            print(f"{a.notebook}: a cell failed\n{str(exc)[-3000:]}", file=sys.stderr)
            return 1
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                print(out.get("text", ""), end="")
    print(f"{a.notebook}: {len(nb.cells)} cells ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
