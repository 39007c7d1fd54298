"""Named errors raised by the library; the command line turns each into one red line."""

from __future__ import annotations


class OsdError(Exception):
    """Base class of every error osd raises on purpose.

    The message says what is wrong in the library's terms (settings, files, steps). ``rebuild``
    names the step that makes what is missing (e.g. ``"train --split a"``); the command line turns
    it into the command to run, a notebook reads it as the step to call.
    """

    def __init__(self, message: str = "", rebuild: str | None = None):
        super().__init__(message)
        self.rebuild = rebuild


class ConfigError(OsdError):
    """The project file or a ``--set`` override is invalid."""


class DataError(OsdError):
    """Input data is missing, empty or unusable."""


class WeightsError(OsdError):
    """Model weights could not be obtained or do not fit the model."""


class DeviceError(OsdError):
    """The requested compute device is not available."""


class ArtifactError(OsdError):
    """A required artifact is missing and cannot be rebuilt here."""


class OsdWarning(UserWarning):
    """Something was skipped or recomputed; the run continues."""


class SmallSampleWarning(OsdWarning):
    """A threshold set on too few scores (its acceptance known only to a wide interval). ``scope`` says where
    ("split a", or "" for the study's own), ``what`` names the thresholds and their sizes, so the command line
    can say it once per split however many steps set such thresholds."""

    def __init__(self, message: str, scope: str = "", what: str = ""):
        super().__init__(message)
        self.scope, self.what = scope, what or message


class LineageError(ArtifactError):
    """Cached artifacts that do not belong together (one was rebuilt or copied from elsewhere)."""
