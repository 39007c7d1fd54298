"""The complete design: every way of choosing k unknown classes from a class list, one split each.

NEU's seed splits A, B and C hide each class once (3 splits, 2 degrees of freedom for an interval
over split means). The complete design hides every k-subset of the classes: for NEU's 6 classes and
k = 2, C(6, 2) = 15 splits, each class unknown in 5 of them. Those splits are the whole population
of such splits of the data set, so the study's estimand over them is their mean (see
:func:`osd.verdict.complete_design_interval`), not a sample from a larger population of splits.

A split is named by the classes it hides, so a reader can tell them apart: NEU's classes by their
NEU-CLS prefixes (``cr-sc`` hides crazing and scratches), other classes by the shortest prefix (two
characters at least) that tells each apart; a name longer than 32 characters falls back to
``s01``, ``s02``, ... (the tables still list the classes).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping

from osd.config.sections import SplitDef
from osd.errors import ConfigError

MAX_SPLITS = 60  # each split trains a classifier per seed: more than this is a run of days on a CPU
MIN_TRAIN = 2  # training images a known class needs: a class mean and its scatter about it
LISTED, COMPLETE = "listed", "complete"
NEU_ABBREVIATIONS = {"crazing": "cr", "inclusion": "in", "patches": "pa", "pitted_surface": "ps",
                     "rolled-in_scale": "rs", "scratches": "sc"}  # NEU-CLS's file prefixes (Cr_, In_, ...)


def design_size(n_classes: int, unknown: int) -> int:
    """How many splits the complete design over ``n_classes`` classes with ``unknown`` hidden makes."""
    return math.comb(n_classes, unknown) if 0 <= unknown <= n_classes else 0


def check_design(classes: list[str], unknown: int, max_splits: int = MAX_SPLITS) -> int:
    """The number of splits, or a ConfigError that says why the design cannot be run and what to do."""
    n = len(classes)
    if unknown < 1:
        raise ConfigError(f"splits.unknown_per_split = {unknown}: hide at least one class per split")
    if n - unknown < 2:
        raise ConfigError(f"splits.unknown_per_split = {unknown}: {n} classes ({', '.join(classes)}) leave "
                          f"{max(n - unknown, 0)} known class(es) per split; a classifier needs at least 2: use "
                          f"unknown_per_split <= {max(n - 2, 0)}" + ("" if n >= 3 else " (and at least 3 classes)"))
    count = design_size(n, unknown)
    if count > max_splits:
        raise ConfigError(f"splits.design = complete: {n} classes with {unknown} unknown make {count} splits (each "
                          f"trains a classifier per seed; at most {max_splits}): choose a subset, either fewer "
                          "classes in the [splits.<name>] tables or splits.design = \"listed\" with the splits you "
                          "want as tables")
    return count


def split_labels(classes: list[str]) -> dict[str, str]:
    """A short, distinct, name-safe label per class (NEU's by their NEU-CLS prefixes)."""
    if all(c in NEU_ABBREVIATIONS for c in classes):
        return {c: NEU_ABBREVIATIONS[c] for c in classes}
    safe = {c: re.sub(r"[^a-z0-9_]", "", c.lower()) or "x" for c in classes}
    longest = max(len(s) for s in safe.values())
    for width in range(2, longest + 1):
        labels = {c: s[:width] for c, s in safe.items()}
        if len(set(labels.values())) == len(labels):
            return labels
    return {c: f"{s}{i}" for i, (c, s) in enumerate(safe.items())}  # equal after cleaning: made distinct


def complete_splits(classes: Iterable[str], unknown: int, max_splits: int = MAX_SPLITS) -> dict[str, SplitDef]:
    """Every way of choosing ``unknown`` of ``classes`` to hide: ``{name: SplitDef(known, unknown)}``,
    in the order of :func:`itertools.combinations` over the sorted classes."""
    ordered = sorted(set(classes))
    check_design(ordered, unknown, max_splits)
    labels = split_labels(ordered)
    hidden_sets = list(itertools.combinations(ordered, unknown))
    names = ["-".join(labels[c] for c in hidden) for hidden in hidden_sets]
    if any(len(n) > 32 for n in names) or len(set(names)) != len(names):
        names = [f"s{i + 1:02d}" for i in range(len(hidden_sets))]
    return {name: SplitDef([c for c in ordered if c not in hidden], list(hidden))
            for name, hidden in zip(names, hidden_sets)}


def design_classes(named: Mapping[str, SplitDef]) -> list[str]:
    """Every class the splits name (known or unknown), sorted."""
    return sorted({c for sd in named.values() for c in (*sd.known, *sd.unknown)})


def is_complete(named: Mapping[str, SplitDef]) -> bool:
    """True when the splits are exactly every way of hiding k of their classes (k the same in each),
    with more than one split: the population of such splits, not a sample of it."""
    if len(named) < 2:
        return False
    ks = {len(sd.unknown) for sd in named.values()}
    if len(ks) != 1:
        return False
    classes = design_classes(named)
    hidden = {frozenset(sd.unknown) for sd in named.values()}
    return (len(hidden) == len(named) == design_size(len(classes), ks.pop())
            and all(set(sd.known) | set(sd.unknown) == set(classes) for sd in named.values()))


def check_training_images(counts: Mapping[str, int], train_fraction: float, min_train: int = MIN_TRAIN) -> None:
    """Before a complete design runs: every class is known in some split, so each needs ``min_train``
    training images (``round(train_fraction x its images)``); one ConfigError naming the thin classes."""
    thin = {c: n for c, n in sorted(counts.items()) if round(train_fraction * n) < min_train}
    if thin:
        listed = ", ".join(f"{c} ({n} image{'s' if n != 1 else ''}, {round(train_fraction * n)} for training)"
                           for c, n in thin.items())
        raise ConfigError(f"splits.design = complete: every class is known in some split and needs at least "
                          f"{min_train} training images; too few: {listed}. Add images of it, or leave it out of the "
                          "[splits.<name>] tables")
