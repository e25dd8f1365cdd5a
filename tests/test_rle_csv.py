"""Tests of segnet_lib.rle_csv: reading, grouping and writing RLE CSV files."""
import math

import numpy as np
import pandas as pd
import pytest

from segnet_lib import rle, rle_csv


# ----------------------------------------------------------------------------
# CSV files
# ----------------------------------------------------------------------------

def _expected_maps():
    a = np.zeros((3, 4), np.uint8)
    a[0, 1:3] = 7  # class 7
    a[2, :] = 12  # class 12
    b = np.zeros((2, 5), np.uint8)
    b[:, 4] = 1
    c = np.zeros((4, 2), np.uint8)  # nothing but background
    return {"img_a": a, "img_b": b, "img_c": c}


def _write_seed_style_csv(path, order):
    """id, annotation, width, height, class: one row per (image, class), rows interleaved."""
    maps = _expected_maps()
    rows = []
    for image_id, label_map in maps.items():
        for value, text in rle.encode_label_map(label_map, order).items():
            rows.append(dict(id=image_id, annotation=text, width=label_map.shape[1],
                             height=label_map.shape[0], class_id=value))
    rows.append(dict(id="img_c", annotation="", width=2, height=4, class_id=""))
    rows = [rows[0], rows[2], rows[1], rows[3]]  # img_a's rows apart, as in real files
    pd.DataFrame(rows).to_csv(path, index=False)
    return maps


@pytest.mark.parametrize("order", rle.ORDERS)
def test_read_csv_normalises_columns(tmp_path, order):
    path = tmp_path / "train.csv"
    _write_seed_style_csv(path, order)
    df = rle_csv.read_csv(path)
    assert list(df.columns) == ["id", "rle", "class", "width", "height"]
    assert df["class"].dtype == np.int64 and df["width"].dtype == np.int64
    assert df.attrs["source"] == str(path)
    assert df.loc[3, "rle"] == "" and df.loc[3, "class"] == 0


@pytest.mark.parametrize("order", rle.ORDERS)
def test_iter_label_maps_several_images_and_classes(tmp_path, order):
    path = tmp_path / "train.csv"
    expected = _write_seed_style_csv(path, order)
    decoded = dict(rle_csv.iter_label_maps(path, order))
    assert list(decoded) == ["img_a", "img_b", "img_c"]  # order of first appearance
    for image_id, label_map in expected.items():
        np.testing.assert_array_equal(decoded[image_id], label_map)


def test_iter_label_maps_is_lazy(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"ImageId": ["a", "b", "c"], "EncodedPixels": ["1 2", "3 1", "5 99"],
                  "Width": [2, 2, 2], "Height": [2, 2, 2]}).to_csv(path, index=False)
    maps = rle_csv.iter_label_maps(path, "C")  # the bad row is not decoded yet
    assert next(maps)[0] == "a"
    assert next(maps)[0] == "b"
    with pytest.raises(ValueError, match=r"train.csv, line 4 \(id 'c'\): run 1 \(start 5, length 99\)"):
        next(maps)


def test_instances_and_kaggle_column_names(tmp_path):
    path = tmp_path / "ships.csv"
    pd.DataFrame({"ImageId": ["s1", "s1", "s1", "s2"], "EncodedPixels": ["1 2", "", "7 2", None]}
                 ).to_csv(path, index=False)
    maps = dict(rle_csv.iter_label_maps(path, "F", shape=(3, 3)))
    np.testing.assert_array_equal(maps["s1"], [[1, 0, 2], [1, 0, 2], [0, 0, 0]])
    assert not maps["s2"].any()
    binary = dict(rle_csv.iter_label_maps(path, "F", shape={"s1": (3, 3), "s2": (1, 1)}, ids=["s2"]))
    assert list(binary) == ["s2"] and binary["s2"].shape == (1, 1)


def test_class_names_and_overlap_in_csv(tmp_path):
    path = tmp_path / "named.csv"
    pd.DataFrame({"id": ["x", "x"], "rle": ["1 3", "3 2"], "label": ["dog", "cat"],
                  "width": [3, 3], "height": [2, 2]}).to_csv(path, index=False)
    # Names without a list: sorted, after the background; the frame records them.
    df = rle_csv.read_csv(path)
    assert df["class"].tolist() == [2, 1] and df.attrs["class_names"] == ("background", "cat", "dog")
    assert df.attrs["class_column"] == "label"
    assert rle_csv.RLETable(df, "C").class_names == ("background", "cat", "dog")
    # A documented order wins over the sorted one.
    classes = ["background", "dog", "cat"]
    assert rle_csv.read_csv(path, classes=classes)["class"].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"named.csv, line 2 \(id 'x'\) and .*line 3 \(id 'x'\) overlap"):
        list(rle_csv.iter_label_maps(path, "C", classes=classes))
    (label_map,) = [m for _, m in rle_csv.iter_label_maps(path, "C", classes=classes, overlap="last")]
    np.testing.assert_array_equal(label_map, [[1, 1, 2], [2, 0, 0]])
    with pytest.raises(ValueError, match=r"line 3 \(id 'x'\): label 'cat' is not one of the "
                                         r"classes \(dog\)"):
        rle_csv.read_csv(path, classes={"dog": 8})
    mapped = rle_csv.read_csv(path, classes={"dog": 3, "cat": 1})
    assert mapped.attrs["class_names"] == ("background", "cat", "class 2", "dog")


def test_class_ids_are_checked_against_the_names_given(tmp_path):
    path = _write(tmp_path / "ids.csv", id=["a", "a", "b"], rle=["1 1", "2 1", ""],
                  class_id=["1", "3", ""], width=[2, 2, 2], height=[1, 1, 1])
    df = rle_csv.read_csv(path)  # ids without names stay ids
    assert df["class"].tolist() == [1, 3, 0] and df.attrs["class_names"] is None
    with pytest.raises(ValueError, match=r"ids.csv, line 3 \(id 'a'\): class 3 is outside 0..2 "
                                         r"\(background, ship, boat\)"):
        rle_csv.read_csv(path, classes=("background", "ship", "boat"))
    named = rle_csv.read_csv(path, classes=("background", "ship", "boat", "buoy"))
    assert named["class"].tolist() == [1, 3, 0] and named.attrs["class_names"][3] == "buoy"
    _write(path, id=["a"], rle=["1 1"], class_id=["2.5"])
    with pytest.raises(ValueError, match=r"line 2 \(id 'a'\): class '2.5' is not an integer"):
        rle_csv.read_csv(path)
    _write(path, id=["a"], rle=["1 1"], class_id=[""])
    with pytest.raises(ValueError, match=r"line 2 \(id 'a'\): class is missing"):
        rle_csv.read_csv(path)


def test_read_header_reads_only_the_header(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("id,annotation,cell_type\na,1 1,astro\nb,this row is not read\n")
    assert rle_csv.read_header(path) == ["id", "annotation", "cell_type"]
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        rle_csv.read_header(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty.csv: cannot read a CSV header"):
        rle_csv.read_header(tmp_path / "empty.csv")


def test_csv_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        rle_csv.read_csv(tmp_path / "nope.csv")
    bad_columns = tmp_path / "cols.csv"
    pd.DataFrame({"id": ["a"], "pixels": ["1 1"]}).to_csv(bad_columns, index=False)
    with pytest.raises(ValueError, match=r"cols.csv: no rle column .* columns are \['id', 'pixels'\]"):
        rle_csv.read_csv(bad_columns)
    assert rle_csv.read_csv(bad_columns, rle_column="pixels")["rle"].tolist() == ["1 1"]
    bad_width = tmp_path / "width.csv"
    pd.DataFrame({"id": ["a", "b"], "rle": ["1 1", "1 1"], "width": [2, "wide"],
                  "height": [2, 2]}).to_csv(bad_width, index=False)
    with pytest.raises(ValueError, match=r"width.csv, line 3 \(id 'b'\): width 'wide' is not a "
                                         r"positive integer"):
        rle_csv.read_csv(bad_width)
    sizes = tmp_path / "sizes.csv"
    pd.DataFrame({"id": ["a", "a"], "rle": ["1 1", "3 1"], "width": [2, 3],
                  "height": [2, 2]}).to_csv(sizes, index=False)
    with pytest.raises(ValueError, match=r"id 'a' has rows with different sizes \(height x width\): "
                                         r"2x2 on .*sizes.csv, line 2, 2x3 on .*sizes.csv, line 3"):
        list(rle_csv.iter_label_maps(sizes, "C"))
    no_size = tmp_path / "nosize.csv"
    pd.DataFrame({"id": ["a"], "rle": ["1 1"]}).to_csv(no_size, index=False)
    with pytest.raises(ValueError, match=r"id 'a': no image size; pass shape="):
        list(rle_csv.iter_label_maps(no_size, "C"))
    with pytest.raises(ValueError, match=r"1 id\(s\) have no row"):
        rle_csv.iter_label_maps(no_size, "C", shape=(2, 2), ids=["zzz"])
    with pytest.raises(ValueError, match=r"ok.csv, line 2 \(id 'a'\): height x width 2x2 in the "
                                         r"file but shape \(3, 3\)"):
        list(rle_csv.iter_label_maps(_write(tmp_path / "ok.csv", id=["a"], rle=["1 1"], width=[2],
                                        height=[2]), "C", shape=(3, 3)))


def _write(path, **columns):
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_ids_that_look_missing_stay_ids(tmp_path):
    path = tmp_path / "na.csv"
    path.write_text("id,rle,width,height\nNA,1 1,2,2\nNone,,2,2\n")
    assert list(dict(rle_csv.iter_label_maps(path, "C"))) == ["NA", "None"]


@pytest.mark.parametrize("order", rle.ORDERS)
def test_write_csv_round_trip(tmp_path, order):
    maps = _expected_maps()
    maps["img_b"][0, 0] = 255  # void is not written and reads back as background
    path = rle_csv.write_csv(tmp_path / "sub" / "submission.csv", maps, order)
    df = pd.read_csv(path, keep_default_na=False)
    assert list(df.columns) == ["id", "class", "rle", "width", "height"]
    assert df.loc[df["id"] == "img_c", ["class", "rle"]].values.tolist() == [[0, ""]]
    back = dict(rle_csv.iter_label_maps(path, order))
    for image_id, label_map in maps.items():
        np.testing.assert_array_equal(back[image_id], np.where(label_map == 255, 0, label_map))
    # An iterator of pairs works too (e.g. straight from iter_label_maps).
    again = rle_csv.write_csv(tmp_path / "again.csv", rle_csv.iter_label_maps(path, order), order,
                          sizes=False)
    assert pd.read_csv(again).columns.tolist() == ["id", "class", "rle"]


def test_instance_count_needs_wider_dtype(tmp_path):
    path = tmp_path / "many.csv"
    n = 300
    pd.DataFrame({"id": ["m"] * n, "rle": [f"{i + 1} 1" for i in range(n)], "width": n,
                  "height": 1}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"many.csv, line 257 \(id 'm'\): value 256 is outside"):
        list(rle_csv.iter_label_maps(path, "C"))
    (label_map,) = [m for _, m in rle_csv.iter_label_maps(path, "C", dtype=np.uint16)]
    np.testing.assert_array_equal(label_map.ravel(), np.arange(1, n + 1))
    assert math.isclose(label_map.mean(), (n + 1) / 2)


def test_rle_table_groups_once_and_decodes_on_demand(tmp_path):
    path = tmp_path / "train.csv"
    expected = _write_seed_style_csv(path, "C")
    table = rle_csv.RLETable(path, "C")
    assert table.ids == ["img_a", "img_b", "img_c"] and len(table) == 3
    assert "img_b" in table and "zzz" not in table and table.kind == "semantic"
    assert table.stated_shape("img_a") == (3, 4)
    np.testing.assert_array_equal(table.label_map("img_a"), expected["img_a"])
    # 'binary': every row paints 1, whatever its class.
    binary = rle_csv.RLETable(path, "C", kind="binary").label_map("img_a")
    np.testing.assert_array_equal(binary, expected["img_a"] > 0)
    assert table.check_ids(["img_c", "img_a"]) == ["img_c", "img_a"]
    with pytest.raises(ValueError, match=r"1 id\(s\) have no row in .*train.csv, e.g. \['x'\]"):
        table.check_ids(["img_a", "x"])
    with pytest.raises(KeyError, match="'x'"):
        table.label_map("x")
    with pytest.raises(ValueError, match=r"train.csv, line 2 \(id 'img_a'\): height x width 3x4 in "
                                         r"the file but its image a.png is 5x4"):
        table.label_map("img_a", (5, 4), shape_name="its image a.png")
    assert table.where("img_b").endswith("train.csv, line 3 (id 'img_b')")
    with pytest.raises(ValueError, match="kind must be one of"):
        rle_csv.RLETable(path, "C", kind="panoptic")
    with pytest.raises(ValueError, match="order must be 'C'"):
        rle_csv.RLETable(path, "c")
