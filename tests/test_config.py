from pathlib import Path

import pytest

from osd import config
from osd.errors import ConfigError


def test_defaults_make_each_class_unknown_once():
    cfg = config.Config()
    unknown = [c for s in "abc" for c in cfg.split(s).unknown]
    assert sorted(unknown) == sorted(config.NEU_CLASSES)
    for s in "abc":
        assert len(cfg.split(s).known) == 4


def test_render_then_load_roundtrip(tmp_path: Path):
    cfg = config.Config(base_dir=tmp_path).replace(**{"classifier.epochs": 3, "neu.root": "x"})
    (tmp_path / "osd.toml").write_text(config.render_toml(cfg))
    loaded = config.load(tmp_path)
    assert loaded.classifier.epochs == 3
    assert loaded.to_dict() == cfg.to_dict()
    assert loaded.output_dir == tmp_path.resolve() / "outputs"


@pytest.mark.parametrize("text, message", [
    ("[classifier]\nepoch = 3\n", "classifier.epoch: unknown setting; did you mean 'classifier.epochs'?"),
    ("[classifer]\n", "classifer: unknown setting; did you mean 'classifier'?"),
    ("[classifier]\nlr = -1\n", "classifier.lr: must be > 0"),
    ("[classifier]\nepochs = 'ten'\n", "classifier.epochs: must be an integer"),
    ("[project]\ndevice = 'tpu'\n", "project.device: must be one of auto, cpu, cuda, mps"),
    ("[splits.a]\nknown = ['crazing', 'patches']\nunknown = ['crazing']\n", "splits.a: crazing is both known and unknown"),
])
def test_bad_values_name_their_key(tmp_path: Path, text: str, message: str):
    (tmp_path / "osd.toml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        config.load(tmp_path)
    assert message in str(exc.value)


def test_set_overrides_are_typed_and_validated(tmp_path: Path):
    (tmp_path / "osd.toml").write_text("")
    cfg = config.load(tmp_path, ["classifier.epochs=5", "classifier.weights=none", "splits.a.unknown=['crazing']"])
    assert cfg.classifier.epochs == 5 and cfg.classifier.weights == "none"
    assert cfg.splits.a.unknown == ["crazing"]
    with pytest.raises(ConfigError, match="classifier.batch_size: must be > 0"):
        config.load(tmp_path, ["classifier.batch_size=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config.load(tmp_path, ["classifier.epochs"])


def test_missing_project_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="no project file"):
        config.load(tmp_path)


def test_a_project_names_its_own_splits(tmp_path: Path):
    (tmp_path / "osd.toml").write_text(
        "[splits.x]\nknown = ['p', 'q']\nunknown = ['r']\n[splits.y]\nknown = ['q', 'r']\nunknown = ['p']\n")
    cfg = config.load(tmp_path)
    assert cfg.split_names == ["x", "y"] and cfg.split("y").unknown == ["p"]
    assert cfg.flat(["splits.x"]) == {"splits.x.known": ["p", "q"], "splits.x.unknown": ["r"]}
    more = config.load(tmp_path, ["splits.z.known=['p','r']", "splits.z.unknown=['q']"])
    assert more.split_names == ["x", "y", "z"]
    (tmp_path / "osd.toml").write_text(config.render_toml(more))
    assert config.load(tmp_path).to_dict() == more.to_dict()
    with pytest.raises(ConfigError, match="unknown split 'a'"):
        cfg.split("a")
    (tmp_path / "osd.toml").write_text("[splits.a]\nunknown = ['crazing']\n")  # NEU names: a changes, b and c stay
    neu = config.load(tmp_path)
    assert neu.split_names == ["a", "b", "c"] and neu.split("a").unknown == ["crazing"]
    (tmp_path / "osd.toml").write_text("[splits.Bad]\nknown = ['p', 'q']\nunknown = ['r']\n")
    with pytest.raises(ConfigError, match="splits.Bad"):
        config.load(tmp_path)


def test_an_unknown_baseline_is_refused_when_the_config_loads():
    import dataclasses

    from osd.config import Config, OsrSection
    from osd.errors import ConfigError
    from osd.osr.baselines import BASELINES

    field = {f.name: f for f in dataclasses.fields(OsrSection)}["baselines"]
    assert tuple(field.metadata["choices"]) == BASELINES  # the config's names are the scorers'
    with pytest.raises(ConfigError, match=r"osr.baselines: unknown 'nosuch'"):
        Config().replace(**{"osr.baselines": ["energy", "nosuch"]})


@pytest.mark.parametrize("text", [".=3", ".classifier.epochs=3", "classifier..epochs=3", "classifier.=3"])
def test_an_override_with_an_empty_key_part_names_what_is_wrong(text: str):
    """Issue 51, item 8: '--set .=3' printed 'error: : unknown setting'."""
    with pytest.raises(ConfigError, match="no empty part"):
        config.parse_override(text)


def test_init_given_a_file_for_a_folder_says_so(tmp_path: Path):
    from osd.project import init_project

    f = tmp_path / "normal.png"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match="--normal .*normal.png: a file; give the folder that holds the images"):
        init_project(tmp_path / "p", normal=f)


def test_two_splits_with_the_same_known_classes_are_refused_naming_both(tmp_path: Path):
    """Issue 48, item 4: they would share one classifier, one tau and one set of known test images."""
    (tmp_path / "osd.toml").write_text(
        "[splits.x]\nknown = ['p', 'q']\nunknown = ['r']\n[splits.y]\nknown = ['q', 'p']\nunknown = ['s']\n")
    with pytest.raises(ConfigError, match=r"splits\.y: the same known classes as splits\.x \(p, q\)"):
        config.load(tmp_path)
