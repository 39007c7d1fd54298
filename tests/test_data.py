import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_neu, write_severstal
from osd import config
from osd.data.images import load_rgb
from osd.data.neu import index_neu
from osd.data.severstal import crop_boxes, index_severstal
from osd.data.splits import make_split, split_normals
from osd.errors import ConfigError, DataError
from osd.pipeline.job import Job


@pytest.mark.parametrize("layout, expected", [("neu-cls", "neu-cls"), ("neu-det", "neu-det"),
                                              ("kaggle", "class-folders"), ("folders", "class-folders")])
def test_every_neu_layout_maps_to_canonical_classes(tmp_path: Path, layout: str, expected: str):
    index = index_neu(write_neu(tmp_path, layout))
    assert index.layout == expected
    assert index.counts() == {c: 6 for c in config.NEU_CLASSES}


def test_custom_class_folders_keep_their_names(tmp_path: Path):
    index = index_neu(write_neu(tmp_path, "folders", per_class=3, classes=("dent", "rust")))
    assert index.counts() == {"dent": 3, "rust": 3}


def test_images_decoded_by_content_in_any_mode(tmp_path: Path):
    png_as_jpg = tmp_path / "fake.jpg"
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(png_as_jpg, format="PNG")
    sixteen = tmp_path / "deep.png"
    Image.fromarray((np.ones((8, 8)) * 65535).astype(np.uint16)).save(sixteen)
    palette = tmp_path / "pal.gif"
    Image.new("P", (8, 8), 3).save(palette)
    for p in (png_as_jpg, sixteen, palette):
        img = load_rgb(p)
        assert img.mode == "RGB" and img.size == (8, 8)
    assert load_rgb(sixteen).getpixel((0, 0)) == (255, 255, 255)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg"):
        load_rgb(bad)


@pytest.mark.parametrize("fmt", ["current", "old"])
def test_severstal_both_csv_formats(tmp_path: Path, fmt: str):
    idx = index_severstal(write_severstal(tmp_path, fmt))
    assert idx.csv_format == fmt
    assert len(idx.normal) == 6 and len(idx.defective) == 2


def test_crops_skip_dark_background_and_cover_the_edge():
    grey = np.full((256, 1600), 120, dtype=np.uint8)
    grey[:, :300] = 5
    boxes = crop_boxes(grey, 256, 256, 30, 0.5)
    assert boxes[-1] == (1344, 0, 1600, 256)
    assert all(left >= 128 for left, *_ in boxes)  # crops mostly in the dark part are gone
    assert len(boxes) == 6


def _split(cfg, name, index):
    return make_split(name, cfg.split(name), cfg.splits, cfg.project.seed, index)


def test_split_is_stratified_seeded_and_keeps_duplicates_together(tmp_path: Path):
    root = write_neu(tmp_path / "neu", "neu-det", per_class=10)
    shutil.copy(root / "IMAGES" / "patches_1.jpg", root / "IMAGES" / "patches_11.jpg")
    cfg = config.Config(base_dir=tmp_path)
    index = index_neu(root)
    m1, m2 = _split(cfg, "a", index), _split(cfg, "a", index)
    assert m1.to_csv() == m2.to_csv()
    counts = m1.counts()
    assert counts["inclusion"] == {"train": 6, "epoch_select": 1, "threshold": 1, "test": 2}
    assert counts["crazing"] == {"train": 0, "epoch_select": 0, "threshold": 0, "test": 2}  # balanced with a known test count
    parts = {e.partition for e in m1.entries if e.path.name in ("patches_1.jpg", "patches_11.jpg")}
    assert len(parts) == 1
    other = _split(config.Config(base_dir=tmp_path).replace(**{"project.seed": 1}), "a", index)
    assert other.to_csv() != m1.to_csv()


def test_selection_images_are_carved_from_validation_and_leave_test_alone(tmp_path: Path):
    """Epoch-choosing images and threshold images are disjoint; the share moves no test image."""
    root = write_neu(tmp_path / "neu", "neu-det", per_class=20)
    index = index_neu(root)
    base = config.Config(base_dir=tmp_path)
    half = _split(base, "a", index)
    none = _split(base.replace(**{"splits.selection_fraction": 0.0}), "a", index)
    assert half.counts()["inclusion"] == {"train": 12, "epoch_select": 2, "threshold": 2, "test": 4}
    assert none.counts()["inclusion"] == {"train": 12, "epoch_select": 0, "threshold": 4, "test": 4}
    by_path = {e.rel: e.partition for e in none.entries}
    for e in half.entries:  # select + val of one = val of the other; train and test identical
        assert by_path[e.rel] == ("threshold" if e.partition == "epoch_select" else e.partition)
    assert not {e.rel for e in half.part("epoch_select")} & {e.rel for e in half.part("threshold")}


def test_split_class_absent_from_data_is_named(tmp_path: Path):
    root = write_neu(tmp_path / "neu", "folders", per_class=3, classes=("dent", "rust"))
    with pytest.raises(ConfigError, match="splits.a.known: inclusion, patches"):
        _split(config.Config(base_dir=tmp_path), "a", index_neu(root))


def test_normal_split_by_image():
    paths = [Path(f"{i}.jpg") for i in range(20)]
    s = split_normals(paths, 0.7, 0.15, seed=0)
    assert (len(s.bank), len(s.calibration), len(s.test)) == (14, 3, 3)
    assert set(s.bank) | set(s.calibration) | set(s.test) == set(paths)


def test_two_byte_identical_good_parts_never_land_in_different_partitions():
    paths = [Path(f"{i:02d}.jpg") for i in range(40)]
    # eight twin pairs (a KolektorSDD set had 14: five test good parts with their twin in the bank)
    digests = {p: f"d{min(i, 39 - i) if i < 28 else i}" for i, p in enumerate(paths)}
    for seed in range(10):
        s = split_normals(paths, 0.6, 0.2, seed=seed, digests=digests)
        where = {p: part for part in ("bank", "calibration", "test") for p in getattr(s, part)}
        assert sorted(where) == paths
        for p in paths:
            twins = [q for q in paths if digests[q] == digests[p]]
            assert len({where[q] for q in twins}) == 1, (seed, twins)


def test_the_normal_split_without_duplicates_is_the_image_level_one():
    paths = [Path(f"{i}.jpg") for i in range(20)]
    assert split_normals(paths, 0.7, 0.15, 3, {p: str(p) for p in paths}) == split_normals(paths, 0.7, 0.15, 3)


def test_data_check_lists_identical_normal_images_with_their_partition(tmp_path: Path):
    import shutil

    from conftest import write_neu
    from osd.pipeline.check import check_data

    root = write_neu(tmp_path / "neu", "folders", per_class=3, classes=("dent", "rust", "pit"))
    good = tmp_path / "good"
    good.mkdir()
    src = next(root.rglob("*.png"))
    from PIL import Image
    for i in range(8):
        Image.new("L", (64, 64), 40 + 20 * i).save(good / f"g{i}.png")
    shutil.copy(good / "g0.png", good / "g0_copy.png")
    shutil.copy(src, good / "also_a_defect.png")
    cfg = config.from_dict({"neu": {"root": str(root)}, "normal": {"folder": str(good)},
                            "splits": {"s": {"known": ["dent", "rust"], "unknown": ["pit"]}}}, tmp_path)
    report = check_data(Job.of(cfg))
    dup = report.normal["duplicates"]
    twins = next(g for g in dup if any(p.endswith("g0_copy.png") for p in g))
    assert len(twins) == 2 and len(set(twins.values())) == 1 and set(twins.values()) <= {"bank", "calibration", "test"}
    assert any(set(g.values()) == {"normal", "defect"} for g in dup)
    assert any("byte-identical to a defect image" in n for n in report.problems)  # issue 48: refused, not warned
    assert any("byte-identical normal images" in n and "each kept in one partition" in n for n in report.notes)
    from osd.errors import DataError
    with pytest.raises(DataError, match="also_a_defect.png: byte-identical to the defect image"):
        Job.of(cfg).normals  # noqa: B018 - the study's own loading refuses it


def test_rle_masks_decode_column_major_and_bad_rows_name_their_line(tmp_path):
    import numpy as np
    import pytest

    from osd.data.severstal import decode_rle, read_train_csv
    from osd.errors import DataError

    m = decode_rle("1 2 6 1", (4, 3))  # pixels 1-2 are rows 0-1 of column 0; pixel 6 is row 1 of column 1
    assert np.argwhere(m).tolist() == [[0, 0], [1, 0], [1, 1]]
    with pytest.raises(DataError, match="outside"):
        decode_rle("12 5", (4, 3))
    bad = tmp_path / "train.csv"
    bad.write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 2\nb.jpg,x,1 2\n")
    with pytest.raises(DataError, match=r"line 3: ClassId 'x' is not an integer"):
        read_train_csv(bad)
    bad.write_text("a.jpg,1," + "1 2 " * 700 + "\n")
    with pytest.raises(DataError) as err:
        read_train_csv(bad)
    assert len(str(err.value)) < 300
