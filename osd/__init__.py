"""osd: image-level open-set defect detection on steel surfaces."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
