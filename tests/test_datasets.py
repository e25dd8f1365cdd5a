"""Tests of segnet_lib.datasets: the VOC and CSV datasets and the one opener."""

import numpy as np
import pytest
from PIL import Image

from segnet_lib import cells, datasets, rle_csv, sample_data, voc


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
    with pytest.raises(ValueError, match=r"t.csv, line 2 \(id 'a'\): height x width 6x8 in the file "
                                         r"but its image '.*a.jpg' is 5x8"):
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


# --- class names from the data ----------------------------------------------

def _write_rows(path, header, rows):
    path.write_text("\n".join([header] + rows) + "\n")
    return path


@pytest.fixture
def two_images(tmp_path):
    """Images a.png and b.png (4x5 RGB) in tmp_path/JPEGImages."""
    images = tmp_path / voc.IMAGE_DIR
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(images / f"{name}.png")
    return images


@pytest.mark.parametrize("header, rows, names, values", [
    # Names: background, then sorted; never VOC's list.
    ("id,rle,label", ["a,1 2,zebra", "a,6 1,ant", "b,3 1,zebra"],
     ("background", "ant", "zebra"), [2, 2, 0, 0, 0, 1]),
    # Ids without names: numbered up to the largest.
    ("ImageId,EncodedPixels,ClassId", ["a,1 2,3", "a,6 1,1", "b,3 1,2"],
     ("background", "class 1", "class 2", "class 3"), [3, 3, 0, 0, 0, 1]),
    # No class column: one foreground class.
    ("id,annotation", ["a,1 2", "a,6 1", "b,3 1"], ("background", "foreground"),
     [1, 1, 0, 0, 0, 1]),
])
def test_csv_class_names_come_from_the_data(tmp_path, two_images, header, rows, names, values):
    csv = _write_rows(tmp_path / "t.csv", header, rows)
    ds = datasets.CSVSegmentation(two_images, csv, "C")
    assert ds.class_names == names and ds.num_classes == len(names)
    assert ds[0][1].ravel()[:6].tolist() == values
    for split in datasets.CSV_SPLITS:  # the opener gives both splits the same classes
        assert datasets.open_split(csv, split, rle_order="C", val_fraction=0.5).class_names == names


def test_csv_class_names_given_by_the_caller(tmp_path, two_images):
    named = _write_rows(tmp_path / "named.csv", "id,rle,label", ["a,1 2,zebra", "b,3 1,ant"])
    ds = datasets.CSVSegmentation(two_images, named, "C", class_names=("bg", "zebra", "ant"))
    assert ds.class_names == ("bg", "zebra", "ant") and ds[0][1].ravel()[0] == 1
    with pytest.raises(ValueError, match=r"named.csv, line 3 \(id 'b'\): label 'ant' is not one "
                                         r"of the classes \(zebra\)"):
        datasets.CSVSegmentation(two_images, named, "C", class_names=("bg", "zebra"))
    ids = _write_rows(tmp_path / "ids.csv", "id,rle,class", ["a,1 2,2", "b,3 1,1"])
    ds = datasets.CSVSegmentation(two_images, ids, "C", class_names=voc.VOC_CLASSES)
    assert ds.class_names == voc.VOC_CLASSES  # only when asked for
    plain = _write_rows(tmp_path / "plain.csv", "id,rle", ["a,1 2", "b,3 1"])
    assert datasets.CSVSegmentation(two_images, plain, "C", class_names=("bg", "ship")).class_names \
        == ("bg", "ship")
    with pytest.raises(ValueError, match="need two class names"):
        datasets.CSVSegmentation(two_images, plain, "C", class_names=("bg",))
    # --class-column picks a column that is not found by name.
    other = _write_rows(tmp_path / "other.csv", "id,rle,kind", ["a,1 2,x", "b,3 1,y"])
    assert datasets.CSVSegmentation(two_images, other, "C").class_names == datasets.BINARY_CLASSES
    assert datasets.CSVSegmentation(two_images, other, "C", class_column="kind").class_names == (
        "background", "x", "y")


def test_val_csv_is_read_with_the_classes_of_the_training_csv(tmp_path, two_images):
    train_csv = _write_rows(tmp_path / "train.csv", "id,rle,label", ["a,1 2,zebra", "a,6 1,ant"])
    val_csv = _write_rows(tmp_path / "val.csv", "id,rle,label", ["b,3 1,zebra"])
    val = datasets.open_split(train_csv, "val", rle_order="C", val_csv=val_csv)
    assert val.class_names == ("background", "ant", "zebra") and val[0][1].ravel()[2] == 2
    wrong = _write_rows(tmp_path / "wrong.csv", "id,rle,label", ["b,3 1,yak"])
    with pytest.raises(ValueError, match=r"wrong.csv, line 2 \(id 'b'\): label 'yak' is not one"):
        datasets.open_split(train_csv, "val", rle_order="C", val_csv=wrong)


def test_overlap_policy_is_an_argument(tmp_path, two_images):
    csv = _write_rows(tmp_path / "t.csv", "id,rle,label", ["a,1 3,ant", "a,3 2,bee", "b,1 1,ant"])
    last = datasets.CSVSegmentation(two_images, csv, "C")
    assert last.overlap == datasets.DEFAULT_OVERLAP == "last"
    assert last[0][1].ravel()[:5].tolist() == [1, 1, 2, 2, 0]
    first = datasets.open_split(csv, "train", rle_order="C", overlap="first", val_fraction=0.5)
    assert first.overlap == "first"
    strict = datasets.CSVSegmentation(two_images, csv, "C", overlap="error")
    with pytest.raises(ValueError, match=r"t.csv, line 2 \(id 'a'\) and .*line 3 \(id 'a'\) overlap"):
        strict[0]
    with pytest.raises(ValueError, match="overlap: overlap must be one of"):
        datasets.open_split(csv, "train", rle_order="C", overlap="max")


# --- the Sartorius layout ---------------------------------------------------

def test_a_sartorius_download_is_read_as_its_header_says(sartorius_copy):
    root, expected = sartorius_copy
    csv = root / cells.CSV_NAME
    assert datasets.check_data(csv) == "csv"  # no pixel order needed
    found = datasets.csv_options(csv)
    assert (found.order, found.class_column, found.layout) == ("C", "cell_type", "sartorius")
    assert found.image_dir == root / "train" and found.class_names == cells.CLASS_NAMES
    train = datasets.open_split(csv, "train", val_fraction=0.25, seed=1)
    val = datasets.open_split(str(csv), "val", val_fraction=0.25, seed=1)
    assert sorted(train.ids + val.ids) == sorted(expected) and len(val) == 1
    for ds in (train, val):
        assert ds.class_names == ("background", "shsy5y", "astro", "cort")  # not VOC's, not sorted
        assert ds.order == "C" and ds.overlap == "last"
        for i, image_id in enumerate(ds.ids):
            image, mask = ds[i]
            grey, labels = expected[image_id]
            assert image.shape == (520, 704, 3)  # greyscale read as the pipeline's 3 channels
            assert all(np.array_equal(image[..., c], grey) for c in range(3))
            np.testing.assert_array_equal(mask, labels)
    # The overlapping cells of image 0 are in the file: a strict reader refuses them.
    with pytest.raises(ValueError, match=r"train.csv, line 3 \(id '0a6ecc5fe78a'\) and .*line 4 "
                                         r"\(id '0a6ecc5fe78a'\) overlap"):
        _read_all(csv, overlap="error")


def _read_all(csv, **options):
    """``{id: mask}`` of both splits of a CSV (rows that do not decode raise here)."""
    out = {}
    for split in datasets.CSV_SPLITS:
        ds = datasets.open_split(csv, split, val_fraction=0.25, seed=1, **options)
        out.update((image_id, ds[i][1]) for i, image_id in enumerate(ds.ids))
    return out


def _edit_row(csv, line, column, value):
    """Sets ``column`` on file line ``line`` of a CSV written without quotes."""
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[line - 1].split(",")
    fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("column, value, error, message", [
    ("cell_type", "neuron", ValueError,
     r"train.csv, line 5 \(id '0ba181d412da'\): cell_type 'neuron' is not one of the classes "
     r"\(shsy5y, astro, cort\)"),
    ("width", "700", ValueError,
     r"line 5 \(id '0ba181d412da'\): height x width 520x700 in the file but its image "
     r"'.*0ba181d412da.png' is 520x704"),
    ("annotation", "366071 11", ValueError,
     r"line 5 \(id '0ba181d412da'\): run 1 \(start 366071, length 11\) ends at pixel 366081, "
     r"past the last pixel 366080 of a 520x704 image"),
    ("annotation", "900 5 100 3", ValueError,
     r"line 5 \(id '0ba181d412da'\): run 2 \(start 100, length 3\) is out of order"),
    ("annotation", "100 5 102 3", ValueError,
     r"line 5 \(id '0ba181d412da'\): run 2 \(start 102, length 3\) overlaps run 1"),
    ("id", "ffffffffffff", FileNotFoundError,
     r"train.csv, line 5 \(id 'ffffffffffff'\): no image in '.*train'"),
])
def test_bad_sartorius_rows_are_named_by_line_and_id(sartorius_copy, column, value, error, message):
    root, _ = sartorius_copy
    csv = root / cells.CSV_NAME
    _edit_row(csv, 5, column, value)  # line 5: image 1 (astro), its only cell
    with pytest.raises(error, match=message):
        _read_all(csv)  # row errors surface when the image is read


def test_a_run_may_end_on_the_last_pixel(sartorius_copy):
    """The run that ends exactly on the last pixel is fine: the check is not off by one."""
    root, _ = sartorius_copy
    csv = root / cells.CSV_NAME
    _edit_row(csv, 5, "annotation", "366071 10")
    mask = _read_all(csv)["0ba181d412da"]
    assert mask[-1, -11:].tolist() == [0] + [2] * 10 and np.count_nonzero(mask) == 10


def test_options_given_win_over_the_header(sartorius_copy, tmp_path):
    root, _ = sartorius_copy
    csv = root / cells.CSV_NAME
    elsewhere = tmp_path / "pngs"
    (root / "train").rename(elsewhere)
    found = datasets.csv_options(csv, rle_order="F", image_dir=elsewhere, class_column="sample_id")
    assert (found.order, found.image_dir, found.class_column, found.class_names) == (
        "F", elsewhere, "sample_id", None)
    # Without train/ next to it, the CSV's own folder is where the images are looked for.
    assert datasets.csv_options(csv).image_dir == root
    ds = datasets.CSVSegmentation(elsewhere, csv, "C", class_column="sample_id")
    assert len(ds.class_names) == 1 + len(ds)  # one sample per image here: names sorted


def test_cells_is_a_data_value(tmp_path, monkeypatch, rng):
    generated = cells.generate(tmp_path / "cells", seed=0, num_images=4, scale=0.25)
    monkeypatch.setattr(cells, "cells_root", lambda: generated)
    assert datasets.check_data("cells") == "cells"
    assert datasets.data_version("cells") == f"cells-v{cells.CELLS_VERSION}"
    assert datasets.data_version(str(generated / cells.CSV_NAME)) is None  # files: no version
    train = datasets.open_split("cells", "train", val_fraction=0.25)
    val = datasets.open_split("cells", "val", val_fraction=0.25)
    assert train.class_names == cells.CLASS_NAMES and train.image_dir == generated / "train"
    assert len(train) == 3 and len(val) == 1 and train[0][0].shape == (130, 176, 3)
    expected = dict(cells.iter_semantic_maps(generated / cells.CSV_NAME))
    np.testing.assert_array_equal(val[0][1], expected[val.ids[0]])


def test_a_csv_without_order_or_sartorius_header_is_refused(tmp_path, two_images):
    csv = _write_rows(tmp_path / "t.csv", "id,annotation,kind", ["a,1 2,x"])
    with pytest.raises(ValueError, match=r"give the pixel order .* only the Sartorius header"):
        datasets.check_data(csv)
