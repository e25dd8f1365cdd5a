"""Tests of segnet_lib.datasets: the VOC and CSV datasets and the one opener."""

import numpy as np
import pytest
from PIL import Image

from segnet_lib import datasets, rle_csv, sample_data, voc


# --- VOCSegmentation ---------------------------------------------------------

def test_voc_segmentation_reads_pairs(voc_root):
    root, pairs = voc_root
    ds = datasets.VOCSegmentation(root.parent.parent, "train")
    assert len(ds) == 3 and ds.ids[0] == "2007_000001"
    assert ds.num_classes == 21 and ds.class_names[8] == "cat"
    image, mask = ds[1]
    assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
    assert np.array_equal(mask, pairs["2007_000002"][1])
    # JPEG is lossy: close, not equal.
    assert np.abs(image.astype(int) - pairs["2007_000002"][0]).mean() < 8
    assert np.array_equal(ds[-1][1], pairs["2007_000003"][1])
    assert ds.mask_path(0).name == "2007_000001.png"
    assert len(list(ds)) == 3
    with pytest.raises(IndexError):
        ds[3]


def test_voc_segmentation_missing_files_fail_early(voc_root):
    root, _ = voc_root
    (root / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"'2007_000002'.*train.txt.*2007_000002.jpg"):
        datasets.VOCSegmentation(root, "train")
    (root / "SegmentationClass" / "2008_000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="2008_000001.png"):
        datasets.VOCSegmentation(root, "val")


def test_voc_segmentation_size_mismatch_and_bad_values(voc_root, palette_png):
    root, _ = voc_root
    palette_png(root / "SegmentationClass" / "2007_000001.png", np.zeros((5, 5), np.uint8))
    palette_png(root / "SegmentationClass" / "2007_000002.png",
                     np.full((20, 30), 22, np.uint8))
    ds = datasets.VOCSegmentation(root, "train")
    with pytest.raises(ValueError, match=r"20x30 but its mask is 5x5.*2007_000001.png"):
        ds[0]
    with pytest.raises(ValueError, match=r"2007_000002.png.*\[22\]"):
        ds[1]


# --- ClassSubset -------------------------------------------------------------

def test_class_subset_renumbers_the_kept_classes_and_voids_the_rest(voc_root):
    root, pairs = voc_root
    full = datasets.VOCSegmentation(root, "train")
    kept = (0, 15, 8)  # background, person, cat: new ids 0, 1, 2
    ds = datasets.keep_classes(full, kept)
    assert isinstance(ds, datasets.ClassSubset) and ds.num_classes == 3
    assert ds.class_names == ("background", "person", "cat") and ds.ids == full.ids
    for i in range(len(ds)):
        old = full.read_mask(i)
        expected = np.full_like(old, 255)
        for new, cls in enumerate(kept):
            expected[old == cls] = new
        assert np.array_equal(ds.read_mask(i), expected)
        image, mask = ds[i]
        assert np.array_equal(mask, expected) and np.array_equal(image, full[i][0])
        assert ds.image_path(i) == full.image_path(i)
    assert datasets.keep_classes(full, None) is full


@pytest.mark.parametrize("classes, message", [
    ([], "at least one"), ([0, 0], "repeat"), ([0, 255], "0..254"), ([1.5], "0..254"),
    ([True], "0..254"), (7, "list of class ids"),
])
def test_check_classes_names_the_bad_value(classes, message):
    with pytest.raises(ValueError, match=message):
        datasets.check_classes(classes)


def test_class_subset_refuses_ids_the_dataset_lacks(voc_root):
    root, _ = voc_root
    with pytest.raises(ValueError, match=r"classes \[21\]"):
        datasets.ClassSubset(datasets.VOCSegmentation(root, "train"), [0, 21])


def test_open_split_keeps_the_classes_asked_for(voc_root):
    root, _ = voc_root
    ds = datasets.open_split(str(root), "val", classes=[0, 1])
    assert ds.class_names == ("background", "aeroplane")
    with pytest.raises(ValueError, match="repeat"):
        datasets.open_split(str(root), "val", classes=[1, 1])


# --- CSVSegmentation ---------------------------------------------------------

def test_csv_segmentation_matches_label_maps(tmp_path, rng):
    images = tmp_path / "images"
    images.mkdir()
    maps = {}
    for k, size in enumerate([(12, 16), (10, 9), (7, 7)]):
        label_map = rng.choice(np.array([0, 0, 2, 9], np.uint8), size)
        if k == 2:
            label_map[:] = 0  # an image with no object
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            images / f"img{k}.png")
        maps[f"img{k}"] = label_map
    for order in ("C", "F"):
        rle_csv.write_csv(tmp_path / f"{order}.csv", maps, order=order)
        ds = datasets.CSVSegmentation(images, tmp_path / f"{order}.csv", order=order,
                                 ids=list(maps))
        assert ds.ids == list(maps) and len(ds) == 3
        for i, (image_id, label_map) in enumerate(maps.items()):
            image, mask = ds[i]
            assert image.shape == (*label_map.shape, 3)
            assert np.array_equal(mask, label_map), (order, image_id)


def test_csv_segmentation_errors(tmp_path, rng):
    images = tmp_path / "images"
    images.mkdir()
    label_map = np.zeros((6, 8), np.uint8)
    label_map[2:4, 2:5] = 3
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(images / "a.jpg")
    rle_csv.write_csv(tmp_path / "t.csv", {"a": label_map, "b": label_map}, order="C")
    with pytest.raises(FileNotFoundError, match="'b'"):
        datasets.CSVSegmentation(images, tmp_path / "t.csv", order="C")
    with pytest.raises(ValueError, match="'zz'"):
        datasets.CSVSegmentation(images, tmp_path / "t.csv", order="C", ids=["zz"])
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        datasets.CSVSegmentation(images, tmp_path / "missing.csv", order="C")
    # The CSV says 6x8; an image of another size is an error, not a crop.
    Image.fromarray(np.zeros((5, 8, 3), np.uint8)).save(images / "a.jpg")
    ds = datasets.CSVSegmentation(images, tmp_path / "t.csv", order="C", ids=["a"])
    with pytest.raises(ValueError, match=r"id 'a' has height x width 6x8 in the file but its "
                                         r"image '.*a.jpg' is 5x8"):
        ds[0]


# --- book_dataset ------------------------------------------------------------

def test_book_dataset_uses_voc_root(voc_root, monkeypatch):
    root, _ = voc_root
    monkeypatch.setenv(voc.VOC_ROOT_ENV, str(root.parent))
    ds = datasets.book_dataset("val")
    assert ds.root == root and ds.ids == ["2008_000001"]


def test_book_dataset_falls_back_to_sample(voc_root, monkeypatch):
    root, _ = voc_root
    monkeypatch.delenv(voc.VOC_ROOT_ENV, raising=False)
    monkeypatch.setattr(sample_data, "sample_root", lambda: root)
    assert datasets.book_dataset("train").root == root


# --- open_split / open_datasets ---------------------------------------------

def write_csv_dataset(tmp_path, n, rng):
    """n images in tmp_path/JPEGImages plus tmp_path/train.csv (class 3 squares)."""
    images = tmp_path / voc.IMAGE_DIR
    images.mkdir()
    maps = {}
    for k in range(n):
        label_map = np.zeros((6, 8), np.uint8)
        label_map[1:3, k % 6:k % 6 + 2] = 3
        Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(images / f"i{k}.png")
        maps[f"i{k}"] = label_map
    return rle_csv.write_csv(tmp_path / "train.csv", maps, order="F"), maps


def test_open_split_reads_every_kind_of_data(voc_root, tmp_path, rng):
    root, _ = voc_root
    assert datasets.open_split(root.parent, "val").ids == ["2008_000001"]
    assert datasets.open_split("sample", "val").root == sample_data.sample_root()
    csv, maps = write_csv_dataset(tmp_path, 10, rng)
    train = datasets.open_split(csv, "train", rle_order="F", val_fraction=0.2, seed=3)
    val = datasets.open_split(str(csv), "val", rle_order="F", val_fraction=0.2, seed=3)
    assert isinstance(val, datasets.CSVSegmentation) and val.image_dir == tmp_path / "JPEGImages"
    assert len(val) == 2 and sorted(train.ids + val.ids) == sorted(maps)
    assert val.ids == sorted(val.ids)  # held-out ids in sorted order, the rest in file order
    for ds in (train, val):
        for i, image_id in enumerate(ds.ids):
            np.testing.assert_array_equal(ds[i][1], maps[image_id])
    # The same arguments give the same split; another seed another one.
    assert datasets.open_split(csv, "val", rle_order="F", val_fraction=0.2, seed=3).ids == val.ids
    assert datasets.open_split(csv, "val", rle_order="F", val_fraction=0.2, seed=4).ids != val.ids
    # A second CSV holds the validation images instead.
    other = rle_csv.write_csv(tmp_path / "val.csv", {"i1": maps["i1"]}, order="F")
    assert datasets.open_split(csv, "val", rle_order="F", val_csv=other).ids == ["i1"]
    assert len(datasets.open_split(csv, "train", rle_order="F", val_csv=other)) == 10


@pytest.mark.parametrize("data, split, options, error, message", [
    ("/no/such/data", "train", {}, FileNotFoundError, "'/no/such/data' not found"),
    ("CSV", "train", {}, ValueError, r"is a CSV: give the pixel order .*--rle-order"),
    ("CSV", "trainval", {"rle_order": "F"}, ValueError, r"splits \('train', 'val'\)"),
    ("CSV", "val", {"rle_order": "X"}, ValueError, "rle_order: order must be 'C'"),
    ("CSV", "val", {"rle_order": "F", "val_fraction": 1.0}, ValueError, r"val_fraction must be in \(0, 1\)"),
    ("CSV", "val", {"rle_order": "F", "val_csv": "/no/val.csv"}, FileNotFoundError, "val_csv '/no/val.csv'"),
    ("CSV", "val", {"rle_order": "F", "image_dir": "/no/images"}, FileNotFoundError, "image_dir"),
    ("DIR", "val", {}, FileNotFoundError, "no PASCAL VOC layout"),
])
def test_open_split_names_what_is_wrong(tmp_path, rng, data, split, options, error, message):
    csv, _ = write_csv_dataset(tmp_path, 3, rng)
    data = {"CSV": str(csv), "DIR": str(tmp_path / voc.IMAGE_DIR)}.get(data, data)
    with pytest.raises(error, match=message):
        datasets.open_split(data, split, **options)


def test_open_split_needs_two_images_to_hold_one_out(tmp_path, rng):
    csv, _ = write_csv_dataset(tmp_path, 1, rng)
    with pytest.raises(ValueError, match=r"1 image\(s\); need 2 or more"):
        datasets.open_split(csv, "val", rle_order="F")


def test_check_data_reads_nothing(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(sample_data, "sample_root", lambda seed=0: pytest.fail("generated data"))
    assert datasets.check_data("sample") == "sample"
    csv, _ = write_csv_dataset(tmp_path, 2, rng)
    assert datasets.check_data(csv, rle_order="C") == "csv"
    with pytest.raises(ValueError, match="data must be"):
        datasets.check_data("")


def test_open_datasets_holds_out_part_of_a_csv():
    from segnet_lib import config

    root = sample_data.sample_root()
    run = config.TrainConfig(data=str(root / "train.csv"), rle_order=sample_data.CSV_ORDER,
                             val_fraction=0.2)
    train_set, val_set = datasets.open_datasets(run)
    assert not set(train_set.ids) & set(val_set.ids)
    assert len(val_set) == round(0.2 * (len(train_set) + len(val_set)))
    voc_train, voc_val = datasets.open_datasets(run.replace(data="sample", rle_order=None))
    assert voc_train.split == "train" and voc_val.split == "val"


def test_csv_subset_shares_the_table(tmp_path, rng):
    csv, maps = write_csv_dataset(tmp_path, 4, rng)
    full = datasets.CSVSegmentation(tmp_path / voc.IMAGE_DIR, csv, "F")
    part = full.subset(["i3", "i1"])
    assert part.ids == ["i3", "i1"] and part.table is full.table and full.ids == list(maps)
    np.testing.assert_array_equal(part[0][1], maps["i3"])
    with pytest.raises(ValueError, match="'nope'"):
        full.subset(["nope"])
