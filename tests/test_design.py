"""The complete design: every way of hiding k classes, its config, its refusals and its interval."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from conftest import write_neu
from osd import config
from osd.config.design import complete_splits, is_complete, split_labels
from osd.errors import ConfigError
from osd.project import init_project
from osd.verdict import RunComparison, complete_design_interval, joint_image_variance, overall


def test_neu_complete_design_hides_every_pair_once_named_by_its_classes():
    cfg = config.Config().replace(**{"splits.design": "complete"})
    named = cfg.splits.named
    assert len(named) == 15
    assert {frozenset(sd.unknown) for sd in named.values()} == {
        frozenset(p) for p in itertools.combinations(config.NEU_CLASSES, 2)}
    assert named["cr-sc"].unknown == ["crazing", "scratches"]
    assert named["cr-sc"].known == ["inclusion", "patches", "pitted_surface", "rolled-in_scale"]
    for c in config.NEU_CLASSES:  # each class unknown in 5 of the 15
        assert sum(c in sd.unknown for sd in named.values()) == 5
    assert is_complete(named) and not is_complete(config.Config().splits.named)


def test_complete_design_survives_the_file_it_is_written_to(tmp_path: Path):
    cfg = config.Config(base_dir=tmp_path).replace(**{"splits.design": "complete", "splits.unknown_per_split": 3})
    (tmp_path / "osd.toml").write_text(config.render_toml(cfg))
    loaded = config.load(tmp_path)
    assert list(loaded.splits.named) == list(cfg.splits.named) and len(loaded.splits.named) == 20
    assert loaded.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("k, message", [
    (5, "leave 1 known class(es) per split; a classifier needs at least 2: use unknown_per_split <= 4"),
    (6, "leave 0 known class(es) per split"),
])
def test_too_few_known_classes_are_refused_in_one_line(k: int, message: str):
    with pytest.raises(ConfigError, match="splits.unknown_per_split") as exc:
        config.Config().replace(**{"splits.design": "complete", "splits.unknown_per_split": k})
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_an_unreasonable_count_is_refused_with_how_to_choose_a_subset():
    classes = [f"class{i:02d}" for i in range(12)]
    with pytest.raises(ConfigError) as exc:
        complete_splits(classes, 4)
    msg = str(exc.value)
    assert "12 classes with 4 unknown make 495 splits" in msg and "splits.design = \"listed\"" in msg


def test_own_classes_get_short_distinct_labels_and_fall_back_to_numbers():
    assert split_labels(["scratch_deep", "scratch_light", "dent"]) == {
        "scratch_deep": "scratch_d", "scratch_light": "scratch_l", "dent": "dent"}
    long = [f"a_very_long_class_name_number_{i}" for i in range(4)]
    named = complete_splits(long, 2)
    assert list(named)[:2] == ["s01", "s02"] and len(named) == 6


def test_init_writes_the_complete_design_for_own_classes(tmp_path: Path):
    neu = write_neu(tmp_path / "data", "folders", per_class=4, classes=("dent", "hole", "rust", "scratch", "stain"))
    made = init_project(tmp_path / "p", neu=neu, design="complete", unknown_per_split=2)
    assert len(made.splits) == 10
    cfg = config.load(tmp_path / "p")
    assert cfg.splits.design == "complete" and is_complete(cfg.splits.named) and len(cfg.splits.named) == 10
    with pytest.raises(ConfigError, match="--design maybe"):
        init_project(tmp_path / "q", neu=neu, design="maybe")


HIDDEN = {"-".join(h): h for h in itertools.combinations("abcdef", 2)}


def _runs(rng, truth, seeds=1, sd=0.048):
    return [(s, r, truth[s] + rng.normal(0, sd)) for r in range(seeds) for s in HIDDEN]


def test_additive_class_effects_are_no_noise():
    """With no run noise, the interval collapses onto the design's mean, however large the class effects."""
    effect = dict(zip("abcdef", [0.3, -0.2, 0.1, 0.0, -0.1, 0.05]))
    truth = {s: 0.04 + effect[a] + effect[b] for s, (a, b) in HIDDEN.items()}
    d = complete_design_interval([(s, 0, v) for s, v in truth.items()], HIDDEN)
    assert d.df == 9 and d.mean == pytest.approx(np.mean(list(truth.values())))
    assert d.ci95[1] - d.ci95[0] < 1e-9


def test_the_interval_covers_the_design_mean_by_simulation():
    """Independent run noise of today's size, class effects shared between splits: coverage near 0.95."""
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(300):
        effect = dict(zip("abcdef", rng.normal(0, 0.05, 6)))
        truth = {s: 0.04 + effect[a] + effect[b] for s, (a, b) in HIDDEN.items()}
        lo, hi = complete_design_interval(_runs(rng, truth), HIDDEN).ci95
        hits += lo <= np.mean(list(truth.values())) <= hi
    assert 0.92 <= hits / 300 <= 0.99


def test_joint_image_variance_sees_images_shared_between_splits():
    """The same images in every split: the grand mean's image variance is one split's, not a fifteenth."""
    rng = np.random.default_rng(0)
    images = {f"img{i}": float(v) for i, v in enumerate(rng.choice([-1.0, 0.0, 1.0], 200, p=[0.1, 0.8, 0.1]))}
    shared = joint_image_variance({0: {s: images for s in HIDDEN}}, n_boot=2000)
    one = joint_image_variance({0: {"x": images}}, n_boot=2000)
    assert shared == pytest.approx(one, rel=0.15)
    assert one == pytest.approx(np.var(list(images.values())) / 200, rel=0.15)
    disjoint = {s: {f"{s}-{k}": v for k, v in images.items()} for s in HIDDEN}
    assert joint_image_variance({0: disjoint}, n_boot=2000) == pytest.approx(one / 15, rel=0.2)


def test_overall_reads_a_complete_design_with_its_own_interval():
    rng = np.random.default_rng(3)
    runs = [RunComparison(s, 0, 0.1 + rng.normal(0, 0.01), None, None, None) for s in HIDDEN]
    v = overall("ignore_no_defect", "open_set_accuracy", runs, hidden=HIDDEN)
    assert v.complete_design and v.claim == "one-stage better"
    assert "all 15 splits of the complete design" in v.interval and "df = 9" in v.interval
    plain = overall("ignore_no_defect", "open_set_accuracy", runs)
    assert not plain.complete_design and "df = 14" in plain.interval


def test_a_thin_class_stops_the_complete_design_before_any_training(tiny_project: Path):
    from osd import Project

    for i in range(3, 11):  # scratches keeps 2 images: 1 for training at train_fraction 0.6
        (tiny_project / "neu" / "IMAGES" / f"scratches_{i}.jpg").unlink()
    p = Project(tiny_project, ["splits.design=complete"])
    with pytest.raises(ConfigError) as exc:
        p.run_all()
    msg = str(exc.value)
    assert "scratches (2 images, 1 for training)" in msg and "at least 2 training images" in msg
    assert not (tiny_project / "outputs" / "patchcore").exists()


def test_the_report_shows_other_regimens_as_an_ablation(tmp_path: Path):
    from osd import artifacts
    from osd.report.build import regimen_ablations
    from osd.report.html import _ablation

    layout = artifacts.Layout(tmp_path)
    lead = {"role": "primary", "metric": "open_set_accuracy", "comparison": "ignore_no_defect",
            "mean_difference": 0.03, "ci95": [-0.01, 0.07], "claim": "no clear difference", "n_splits": 15, "n_seeds": 1}
    artifacts.write_json(tmp_path / "regimen_2" / "report.json", {"report": {"verdict": {"summary": [lead]}}})
    assert regimen_ablations(layout, None) == []  # nothing to set beside
    own = {**lead, "mean_difference": 0.05, "ci95": [0.01, 0.09], "claim": "one-stage better"}
    rows = regimen_ablations(layout, own)
    assert [r["regimen"] for r in rows] == ["this study (its own classifier.train_blocks)",
                                             "classifier.train_blocks = 2 (regimen_2/)"]
    html = _ablation(rows)
    assert "+0.050" in html and "[-0.010, +0.070]" in html and "never used to choose" in html


def test_the_command_line_writes_the_design_and_refuses_in_one_line(tmp_path: Path):
    from typer.testing import CliRunner

    from osd.cli.app import app

    neu = write_neu(tmp_path / "data", "folders", per_class=4, classes=("dent", "hole", "rust", "scratch"))
    r = CliRunner().invoke(app, ["init", str(tmp_path / "p"), "--neu", str(neu), "--design", "complete"])
    assert r.exit_code == 0, r.output
    assert "the complete design, 6 splits: every way of hiding 2" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["init", str(tmp_path / "q"), "--neu", str(neu), "--design", "complete",
                                 "--unknown-per-split", "3"])
    assert r.exit_code == 1 and "fewer than 2 known classes per split" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "q").exists()  # a failed init leaves nothing behind
