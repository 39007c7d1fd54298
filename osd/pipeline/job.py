"""One job of the study, resolved once: what every step of a (project, seed) job reads.

scikit-learn validates its inputs when ``fit`` is entered and never again inside; hatch resolves a
project's fields once and keeps them. Likewise a :class:`Job` is made once per (project, seed) from
the config (by :class:`osd.Project` for a command, by the grid for each of its jobs) and every step
takes it: the output layout, the resources (device, each network's precision, threads), the data
index, the normal images' partitions, the stage-1 sizes and spec, each split's manifest and the
weights' identities are each worked out at most once per job, the first time a step asks, and kept.
Helpers below the steps take plain values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from osd import artifacts, runtime
from osd.config import Config
from osd.errors import OsdError
from osd.types import JsonObject

if TYPE_CHECKING:
    from osd.data.neu import NeuIndex
    from osd.data.splits import SplitManifest
    from osd.patchcore.stage1 import Stage1Sizes
    from osd.pipeline.data import NormalData

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Job:
    """The project's settings for one seed, resolved: ``cfg`` (the job's config, never changed), its
    ``layout`` and ``resources``; the data views below are computed on first use and kept."""

    cfg: Config
    layout: artifacts.Layout
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def of(cls, cfg: Config) -> Job:
        """The job of ``cfg`` (one seed's config, as :meth:`osd.config.Config.for_seed` gives it)."""
        return cls(cfg, artifacts.Layout(cfg.output_dir))

    @property
    def resources(self) -> runtime.Resources:
        """The device, each network's precision and the threads, resolved when a step first computes
        (an absent device or a precision it cannot run is refused then, before that step's work;
        ``osd data check`` never asks)."""
        return self.once("resources", lambda: runtime.resources(self.cfg.project))

    def once(self, key: Any, make: Callable[[], T]) -> T:
        """``make()`` the first time ``key`` is asked in this job, then the value it made."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def seed(self) -> int:
        return self.cfg.project.seed

    @property
    def workers(self) -> int:
        """Image-decoding processes for this job (its share of the cores, :func:`osd.runtime.decode_workers`)."""
        return self.once("workers", lambda: runtime.decode_workers(self.cfg.project, self.resources.threads))

    def split_name(self, split: str) -> str:
        return self.cfg.split_name(split)

    def manifest(self, split: str) -> SplitManifest:
        """The split's manifest (made, checked and written to its folder once per job)."""
        from osd.pipeline.data import split_manifest

        name = self.cfg.split_name(split)
        return self.once(("manifest", name), lambda: split_manifest(self.cfg, name, self.neu, self._normals_if_used))

    @property
    def neu(self) -> tuple[NeuIndex, list[str]]:
        """The defect images' index and their content digests (unreadable files left out)."""
        from osd.pipeline.data import neu_index

        return self.once("neu", lambda: neu_index(self.cfg))

    @property
    def normals(self) -> NormalData:
        """The normal images in their partitions (bank, calibration, test), duplicates kept together; a good
        part byte-identical to a defect image refused (:func:`osd.pipeline.data.refuse_cross_class`)."""
        from osd.pipeline.data import normal_data, refuse_cross_class

        def load() -> NormalData:
            data = normal_data(self.cfg)
            try:
                index, digests = self.neu
            except OsdError:  # a good-parts-only project has no defect images for a good part to repeat
                return data
            refuse_cross_class(data, index.paths, digests)
            return data

        return self.once("normals", load)

    def _normals_if_used(self) -> NormalData | None:
        return self.normals if self.cfg.normal.in_domain else None

    @property
    def stage1_sizes(self) -> Stage1Sizes:
        from osd.pipeline.data import stage1_sizes

        return self.once("stage1_sizes", lambda: stage1_sizes(self.cfg))

    def weights(self, weights: str, arch: str | None = None) -> dict[str, str]:
        """The weights' identity (a file counts by content), hashed once per job."""
        from osd.pipeline.data import weights_identity

        return self.once(("weights", weights, arch), lambda: weights_identity(self.cfg, weights, arch))

    def settings(self, sections: tuple[str, ...]) -> JsonObject:
        """The settings a cache key depends on, weights replaced by their identity."""
        from osd.pipeline.data import settings_key

        return settings_key(self.cfg, sections, self.weights)
