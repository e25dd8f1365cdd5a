"""Tests of segnet_lib.cells: the Sartorius-layout stand-in, label maps, submissions."""
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from segnet_lib import cells, files, rle


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return cells.generate(tmp_path_factory.mktemp("cells"), seed=0, num_images=6, scale=0.5)


@pytest.fixture(scope="module")
def drawn():
    """Eight images of each type at the default scale: ``{type: [(image, masks), ...]}``."""
    return {t: [cells.render_image(np.random.default_rng([7, k]), t, 0.5) for k in range(8)]
            for t in cells.CELL_TYPES}


def _read(root):
    return pd.read_csv(root / cells.CSV_NAME, dtype=str, keep_default_na=False)


def test_layout_and_columns(root):
    with open(root / cells.CSV_NAME) as f:
        assert f.readline().rstrip("\n").split(",") == list(cells.CSV_COLUMNS)
    df = _read(root)
    ids = list(dict.fromkeys(df["id"]))
    assert ids == [cells.image_id(0, k) for k in range(6)]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    assert sorted(p.name for p in (root / cells.IMAGE_DIR).iterdir()) == sorted(f"{i}.png" for i in ids)
    h, w = cells.image_size(0.5)
    assert (h, w) == (260, 352) and cells.image_size(1.0) == (cells.HEIGHT, cells.WIDTH) == (520, 704)
    assert set(df["width"]) == {str(w)} and set(df["height"]) == {str(h)}
    for k, (image_id, rows) in enumerate(df.groupby("id", sort=False)):
        with Image.open(root / cells.IMAGE_DIR / f"{image_id}.png") as img:
            assert img.mode == "L" and img.size == (w, h)
        # One cell type per image, as in the real data, and every type as often.
        assert set(rows["cell_type"]) == {cells.CELL_TYPES[k % 3]}
        for column in ("plate_time", "sample_date", "sample_id", "elapsed_timedelta"):
            assert rows[column].nunique() == 1
    meta = df.drop_duplicates("id")
    for _, row in meta.iterrows():
        assert re.fullmatch(r"\d\dh[03]0m00s", row["plate_time"])
        hours, minutes = int(row["plate_time"][:2]), int(row["plate_time"][3:5])
        assert pd.Timedelta(row["elapsed_timedelta"]) == pd.Timedelta(hours=hours, minutes=minutes)
        assert row["elapsed_timedelta"] == str(pd.Timedelta(hours=hours, minutes=minutes))
        assert pd.Timestamp(row["sample_date"]).strftime("%Y-%m-%d") == row["sample_date"]
        plate = row["sample_id"].split("_")[0]
        assert re.fullmatch(r"[a-z0-9]+\[[^\]]+\]_[A-H]\d{1,2}-\d_Vessel-\d{3}_Ph_\d", row["sample_id"])
        assert plate.startswith(row["cell_type"])  # 'astros[cereb]' holds astro cells
    assert (df["annotation"] != "").all()


def test_annotations_are_row_major_masks_of_the_drawn_cells(root):
    df = _read(root)
    h, w = cells.image_size(0.5)
    for k in (0, 1, 2):
        image, masks = cells.render_image(np.random.default_rng([0, k]), cells.CELL_TYPES[k], 0.5)
        rows = df[df["id"] == cells.image_id(0, k)]["annotation"].tolist()
        assert len(rows) == len(masks) > 0
        for text, mask in zip(rows, masks):
            assert np.array_equal(rle.decode(text, (h, w), "C"), mask)
        with Image.open(root / cells.IMAGE_DIR / f"{cells.image_id(0, k)}.png") as img:
            assert np.array_equal(np.asarray(img), image)
    # Read column-major, every mask lands elsewhere.
    for text in rows:
        assert not np.array_equal(rle.decode(text, (h, w), "F"), rle.decode(text, (h, w), "C"))


def test_deterministic_and_independent_of_num_images(tmp_path, root):
    again = cells.generate(tmp_path / "again", seed=0, num_images=6, scale=0.5)
    fewer = cells.generate(tmp_path / "fewer", seed=0, num_images=2, scale=0.5)
    other = cells.generate(tmp_path / "other", seed=1, num_images=2, scale=0.5)
    assert (again / cells.CSV_NAME).read_bytes() == (root / cells.CSV_NAME).read_bytes()
    first_two = [cells.image_id(0, k) for k in range(2)]
    for image_id in first_two:
        png = f"{cells.IMAGE_DIR}/{image_id}.png"
        assert (fewer / png).read_bytes() == (root / png).read_bytes()
    df = _read(root)
    assert _read(fewer).equals(df[df["id"].isin(first_two)].reset_index(drop=True))
    assert not set(_read(other)["id"]) & set(df["id"])
    assert _read(other)["annotation"].tolist() != df[df["id"].isin(first_two)]["annotation"].tolist()


def test_same_bytes_whatever_simd_numpy_picks(tmp_path, root):
    """NumPy picks SIMD kernels by CPU (some, such as tanh, differ in the last
    bit); a process limited to SSE4.2-era kernels must draw the same files."""
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR")
    out = tmp_path / "baseline"
    subprocess.run([sys.executable, "-c", "import sys; from segnet_lib import cells; "
                    "cells.generate(sys.argv[1], seed=0, num_images=3, scale=0.5)", str(out)],
                   env=env, check=True)
    ids = [cells.image_id(0, k) for k in range(3)]
    df = _read(root)
    assert _read(out).equals(df[df["id"].isin(ids)].reset_index(drop=True))
    for image_id in ids:
        png = f"{cells.IMAGE_DIR}/{image_id}.png"
        assert (out / png).read_bytes() == (root / png).read_bytes()


def _elongation(mask):
    """sqrt of the ratio of the principal second moments: 1 for a disc."""
    ys, xs = np.nonzero(mask)
    small, large = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float)))
    return float(np.sqrt(large / max(small, 1e-6)))


def _clark_evans(masks, shape):
    """Mean nearest-neighbour distance of the centroids over its value for a
    random (Poisson) pattern of that density: < 1 clustered, > 1 spread out."""
    c = np.array([ndimage.center_of_mass(m) for m in masks])
    d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return float(d.min(1).mean() / (0.5 / np.sqrt(len(c) / (shape[0] * shape[1]))))


def test_the_three_morphologies_differ_as_the_real_ones_do(drawn):
    stats = {}
    for t, images in drawn.items():
        masks = [m for _, ms in images for m in ms]
        stats[t] = dict(count=np.mean([len(ms) for _, ms in images]),
                        area=np.median([m.sum() for m in masks]),
                        elongation=np.median([_elongation(m) for m in masks if m.sum() >= 3]),
                        clustering=np.mean([_clark_evans(ms, img.shape) for img, ms in images]))
    cort, shsy5y, astro = stats["cort"], stats["shsy5y"], stats["astro"]
    # Size: astrocytes are large, cortical neurons small.
    assert astro["area"] > 4 * shsy5y["area"] and astro["area"] > 4 * cort["area"]
    assert cort["area"] < shsy5y["area"]
    # Shape: SH-SY5Y cells are elongated spindles, cortical neurons round.
    assert shsy5y["elongation"] > 2.5 and cort["elongation"] < 1.6
    # Number: few astrocytes per image, many of the others.
    assert cort["count"] > 3 * astro["count"] and shsy5y["count"] > 3 * astro["count"]
    # Arrangement: SH-SY5Y clustered, cortical scattered at random, astrocytes spread out.
    assert shsy5y["clustering"] < 0.9 < cort["clustering"] < 1.3 < astro["clustering"]


def test_cells_touch_and_annotations_overlap(drawn):
    touching, overlapping = [], 0
    for _, masks in drawn["shsy5y"]:
        cover = np.sum(masks, axis=0)
        touching += [bool(np.any(ndimage.binary_dilation(m) & (cover - m > 0))) for m in masks]
        overlapping += int(np.count_nonzero(cover > 1))
    assert np.mean(touching) > 0.5 and overlapping > 0


def test_every_annotated_cell_is_one_piece(drawn):
    """Real annotations are one 8-connected piece per cell; a sub-pixel process
    that thresholds into dashes must not add fragments to its cell's mask."""
    eight = np.ones((3, 3), bool)
    for t, images in drawn.items():
        pieces = [ndimage.label(m, structure=eight)[1] for _, ms in images for m in ms]
        assert set(pieces) == {1}, (t, sorted(set(pieces)))


def test_no_intensity_threshold_separates_the_cell_types(drawn):
    pixels = {t: np.concatenate([img[np.any(ms, axis=0)] for img, ms in images])
              for t, images in drawn.items()}
    bins = np.arange(257)
    hist = {t: np.histogram(v, bins)[0] / v.size for t, v in pixels.items()}
    for i, a in enumerate(cells.CELL_TYPES):
        for b in cells.CELL_TYPES[i + 1:]:
            assert np.minimum(hist[a], hist[b]).sum() > 0.7, (a, b)
            # The best single grey-level threshold is barely better than a coin.
            ca, cb = np.cumsum(hist[a]), np.cumsum(hist[b])
            best = np.max(np.maximum(ca + 1 - cb, cb + 1 - ca)) / 2
            assert best < 0.7, (a, b, best)


def test_semantic_map_overlap_policies():
    shape = (3, 4)
    a = rle.encode(np.array([[1, 1, 0, 0]] * 3), "C")  # columns 0-1
    b = rle.encode(np.array([[0, 1, 1, 0]] * 3), "C")  # columns 1-2, overlaps a in column 1
    last = cells.semantic_map([a, b], ["cort", "astro"], shape)
    assert last.dtype == np.uint8 and last[0].tolist() == [3, 2, 2, 0]
    assert cells.semantic_map([a, b], ["cort", "astro"], shape, overlap="first")[0].tolist() == [3, 3, 2, 0]
    with pytest.raises(ValueError, match=r"line 2 .* and line 3 .* overlap"):
        cells.semantic_map([a, b], ["cort", "astro"], shape, overlap="error",
                           row_labels=["line 2 (id 'x')", "line 3 (id 'x')"])
    with pytest.raises(ValueError, match=r"row 1: unknown cell type 'neuron'"):
        cells.semantic_map([a, b], ["cort", "neuron"], shape)
    with pytest.raises(ValueError, match=r"row 0: run 1 .* past the last pixel 12"):
        cells.semantic_map(["10 5"], ["shsy5y"], shape)
    with pytest.raises(ValueError, match="overlap must be one of"):
        cells.semantic_map([a], ["cort"], shape, overlap="max")
    assert cells.CLASS_NAMES[cells.class_id("astro")] == "astro"


def test_iter_semantic_maps_reads_the_generated_csv(root):
    df = _read(root)
    h, w = cells.image_size(0.5)
    maps = dict(cells.iter_semantic_maps(root / cells.CSV_NAME))
    assert list(maps) == list(dict.fromkeys(df["id"]))
    for image_id, label_map in maps.items():
        rows = df[df["id"] == image_id]
        assert label_map.shape == (h, w)
        assert set(np.unique(label_map)) == {0, cells.class_id(rows["cell_type"].iloc[0])}
        assert np.array_equal(label_map, cells.semantic_map(rows["annotation"], rows["cell_type"], (h, w)))


def test_a_real_size_row_is_read_row_major(tmp_path):
    """One hand-written row in the real layout: a bar on row 10, columns 100-199."""
    path = tmp_path / "train.csv"
    path.write_text(",".join(cells.CSV_COLUMNS) + "\n"
                    "0030fd0e6378,7141 100 7845 100,704,520,astro,11h30m00s,2019-06-16,"
                    "astros[cereb]_F3-1_Vessel-361_Ph_1,0 days 11:30:00\n")
    [(image_id, label_map)] = list(cells.iter_semantic_maps(path))
    assert image_id == "0030fd0e6378" and label_map.shape == (520, 704)
    expected = np.zeros((520, 704), np.uint8)
    expected[10:12, 100:200] = cells.class_id("astro")
    assert np.array_equal(label_map, expected)
    path.write_text(path.read_text().replace("cell_type", "kind"))
    with pytest.raises(ValueError, match=r"train.csv: no column 'cell_type' for the class"):
        list(cells.iter_semantic_maps(path))


@pytest.mark.parametrize("column, value, message", [
    ("cell_type", "neuron", r"line 4 \(id '\w{12}'\): cell_type 'neuron' is not one of the classes "
                            r"\(shsy5y, astro, cort\)"),
    ("width", "353", r"id '\w{12}' has rows with different sizes \(height x width\): 260x352 on "
                     r".*train.csv, line 2, 260x353 on .*train.csv, line 4"),
    ("annotation", "91515 10", r"line 4 \(id '\w{12}'\): run 1 .* past the last pixel 91520"),
    ("annotation", "50 3 40 2", r"line 4 \(id '\w{12}'\): run 2 .* is out of order"),
    ("annotation", "50 3 51 2", r"line 4 \(id '\w{12}'\): run 2 .* overlaps run 1"),
])
def test_bad_rows_are_named(root, tmp_path, column, value, message):
    df = _read(root)
    df.loc[2, column] = value  # file line 4: the header is line 1
    path = tmp_path / "train.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        list(cells.iter_semantic_maps(path))


def test_instances_are_connected_components_per_class():
    label = np.zeros((6, 8), np.uint8)
    label[0:2, 0:2] = 3  # two cort cells touching: they merge
    label[0:2, 2:4] = 3
    label[3, 0] = 1  # an shsy5y cell drawn with a corner-to-corner step
    label[4, 1] = 1
    label[4:6, 5:8] = 2
    label[2, 7] = 2  # a one-pixel speck
    found, classes = cells.instance_map(label)
    assert found.dtype == np.int32 and [cells.CLASS_NAMES[c] for c in classes] == [
        "shsy5y", "astro", "astro", "cort"]
    assert np.bincount(found.ravel())[1:].tolist() == [2, 1, 6, 8]
    assert found[4, 1] == found[3, 0] == 1 and found[2, 7] == 2 and found[0, 3] == 4
    np.testing.assert_array_equal(found > 0, label > 0)  # every labelled pixel, once
    big, classes = cells.instance_map(label, min_area=2)
    assert classes == [1, 2, 3] and big[2, 7] == 0 and big[5, 7] == 2
    with pytest.raises(ValueError, match=r"value 255 at \(row 5, col 0\) is not a class id 0..3"):
        cells.instance_map(np.where(np.arange(48).reshape(6, 8) == 40, 255, label).astype(np.uint8))
    # Any model's classes: here two of them.
    assert cells.instance_map(label.clip(0, 1), class_names=("bg", "thing"))[1] == [1, 1, 1, 1]


def test_many_instances_cost_one_array():
    """Noise predicts tens of thousands of specks: one int32 map, not a mask each."""
    noisy = np.random.default_rng(0).integers(0, 4, (260, 352)).astype(np.uint8)
    found, classes = cells.instance_map(noisy)
    assert len(classes) > 10_000 and found.nbytes == 260 * 352 * 4
    rows = cells.submission_rows("noise", noisy, min_area=3)
    assert len(rows) == len(cells.instance_map(noisy, min_area=3)[1])


def test_submission_round_trip(root, tmp_path):
    h, w = cells.image_size(0.5)
    maps = dict(cells.iter_semantic_maps(root / cells.CSV_NAME))
    rows = []
    for image_id, label_map in maps.items():
        found, classes = cells.instance_map(label_map)
        mine = cells.submission_rows(image_id, label_map)
        assert len(mine) == len(classes) > 0 and all(r["id"] == image_id for r in mine)
        rebuilt = np.zeros_like(label_map)
        for k, (row, class_id) in enumerate(zip(mine, classes), start=1):
            decoded = rle.decode(row["predicted"], (h, w), "C")
            assert np.array_equal(decoded, found == k)
            rebuilt[decoded.astype(bool)] = class_id
        assert np.array_equal(rebuilt, label_map)
        rows += mine
    rows += cells.submission_rows("empty0000000", np.zeros((h, w), np.uint8))
    assert rows[-1] == {"id": "empty0000000", "predicted": ""}
    path = cells.write_submission(tmp_path / "sub" / "submission.csv", rows)
    with open(path) as f:
        assert f.readline().strip() == "id,predicted"
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert back.to_dict("records") == rows
    assert [p.name for p in path.parent.iterdir()] == ["submission.csv"]  # no temporary left


def test_write_submission_rejects_bad_rows_and_keeps_the_old_file(tmp_path):
    path = cells.write_submission(tmp_path / "s.csv", [{"id": "a", "predicted": "1 2"}])
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"submission row 1 has no predicted"):
        cells.write_submission(path, [{"id": "a", "predicted": ""}, {"id": "b"}])
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_bad_arguments_are_named(rng):
    for scale in (0, 1.5, "half"):
        with pytest.raises(ValueError, match="scale must be in"):
            cells.image_size(scale)
    with pytest.raises(ValueError, match="num_images must be a positive integer, got 0"):
        cells.generate("unused", num_images=0)
    with pytest.raises(ValueError, match="unknown cell type 'neurons'"):
        cells.render_image(rng, "neurons")
    with pytest.raises(ValueError, match="must be 2-D integers"):
        cells.instance_map(np.zeros((2, 2), np.float32))


def test_real_size_option(rng):
    image, masks = cells.render_image(rng, "astro", scale=1.0)
    assert image.shape == (520, 704) and image.dtype == np.uint8
    assert masks and all(m.shape == (520, 704) and m.dtype == bool for m in masks)


def test_cells_root_caches_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    real = cells.generate

    def small(out_dir, seed=0, scale=0.5, **kwargs):
        calls.append((seed, scale))
        return real(out_dir, seed=seed, num_images=3, scale=scale)

    monkeypatch.setattr(cells, "generate", small)
    root = cells.cells_root(seed=3, scale=0.25)
    assert root.parent == tmp_path / "cache" and "seed3" in root.name and "scale0.25" in root.name
    assert len(dict(cells.iter_semantic_maps(root / cells.CSV_NAME))) == 3
    assert cells.cells_root(seed=3, scale=0.25) == root and calls == [(3, 0.25)]  # cached

    def crash(out_dir, seed=0, scale=0.5, **kwargs):
        (out_dir / cells.IMAGE_DIR).mkdir()
        raise KeyboardInterrupt  # e.g. Ctrl-C half way

    monkeypatch.setattr(cells, "generate", crash)
    with pytest.raises(KeyboardInterrupt):
        cells.cells_root(seed=4)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [root.name]
