"""Named errors raised by the library; the command line turns each into one red line."""

from __future__ import annotations


class OsdError(Exception):
    """Base class of every error osd raises on purpose."""


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


class NotImplementedYet(OsdError):
    """A command of the product that has not been built yet."""


class OsdWarning(UserWarning):
    """Something was skipped or recomputed; the run continues."""


class LineageError(ArtifactError):
    """Cached artifacts that do not belong together (one was rebuilt or copied from elsewhere)."""
