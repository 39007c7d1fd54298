"""The package's version: its own room on the ground floor, so that the modules stamping it into
provenance and reports never import the package itself (whose front door loads the API above them)."""

__version__ = "0.1.0"
