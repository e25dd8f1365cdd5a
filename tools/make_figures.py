"""Draws the book's static figures into book/figures/ (committed PNGs).

The prose chapters (book/*.md) cannot run code, so their diagrams and plots are
drawn here once with matplotlib and committed. Re-run after changing a figure
or the benchmark numbers:

    .venv/bin/python tools/make_figures.py            # every figure
    .venv/bin/python tools/make_figures.py architecture benchmarks

Figures:
    architecture  SegNet's encoder-decoder with the pooling indices passed across.
    pooling       2x2 max pooling with indices, then index unpooling, on numbers.
    rle_order     one RLE string read row-major ('C') and column-major ('F').
    palette       the VOC 2012 class colours (needs segnet_lib.voc).
    benchmarks    bar charts (bench_<figure>.png) and a Markdown table
                  (benchmarks_table.md, included by book/benchmarks.md) of
                  book/figures/benchmarks.csv: numbers printed by the scripts in
                  benchmarks/, copied there by hand from the issue notes.

The PNGs carry no timestamp, so re-drawing an unchanged figure gives no diff.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "book" / "figures"
BENCHMARK_CSV = FIGURES / "benchmarks.csv"
DPI = 110

# One colour per kind of layer, shared by the diagrams so the legend reads the
# same everywhere.
COLORS = {
    "conv": "#4C72B0",      # conv + batch norm + ReLU
    "pool": "#55A868",      # max pooling with indices
    "unpool": "#C44E52",    # index unpooling
    "softmax": "#DD8452",   # the classifier
    "image": "#8C8C8C",
}

# VGG16's 13 conv layers as (stage, output channels per layer). The decoder
# mirrors them; its last conv of each stage narrows to the next stage's width.
ENCODER = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


def _save(fig, name: str) -> Path:
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    # No 'Software'/date metadata: an unchanged figure stays byte-identical.
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")
    return path


def _decoder_layers() -> list[list[tuple[str, int]]]:
    """Decoder stages 5..1 as lists of (layer name, output channels)."""
    stages = []
    for s in range(5, 0, -1):
        widths = ENCODER[s - 1]
        n = len(widths)
        # conv{s}_{n}_D ... conv{s}_1_D; the last one hands over to stage s-1.
        out_next = ENCODER[s - 2][-1] if s > 1 else None
        layers = []
        for k in range(n, 0, -1):
            c = widths[0] if (k > 1 or out_next is None) else out_next
            layers.append((f"conv{s}_{k}_D", c if (k > 1 or s > 1) else "K"))
        stages.append(layers)
    return stages


def architecture() -> Path:
    """SegNet: 13 conv encoder layers, 5 pools, a mirrored decoder, softmax."""
    fig, ax = plt.subplots(figsize=(11, 4.6))
    x = 0.0
    w, gap = 0.22, 0.05
    height = [2.6 * 0.74 ** i for i in range(6)]  # block height ~ resolution
    base = 0.0
    label_y = base - height[0] / 2 - 0.12

    def block(x0, h, kind):
        ax.add_patch(Rectangle((x0, base - h / 2), w, h, facecolor=COLORS[kind],
                               edgecolor="white", linewidth=0.8))

    def stage_label(x0, x1, text):
        # Labels per stage, not per layer: readable at the book's column width.
        ax.text((x0 + x1) / 2, label_y, text, ha="center", va="top", fontsize=9.5, color="#333333")

    def box(x0, text):
        ax.add_patch(FancyBboxPatch((x0, base - 1.3), 0.9, 2.6, boxstyle="round,pad=0.02",
                                    facecolor="#EAEAF2", edgecolor=COLORS["image"]))
        ax.text(x0 + 0.45, base, text, ha="center", va="center", fontsize=10)

    box(x, "RGB\nimage\n$H\\times W$\n$\\times 3$")
    x += 1.15
    pool_x, unpool_x = {}, {}
    for s, widths in enumerate(ENCODER, start=1):
        x_start = x
        for _ in widths:
            block(x, height[s - 1], "conv")
            x += w + gap
        block(x, height[s], "pool")  # output: half the resolution
        pool_x[s] = x
        x += w
        stage_label(x_start, x, f"conv{s}\n{len(widths)}x{widths[0]}")
        x += 3 * gap
    x += 0.2
    for layers in _decoder_layers():
        s = int(layers[0][0][4])
        x_start = x
        block(x, height[s - 1], "unpool")  # output: twice the resolution
        unpool_x[s] = x
        x += w + gap
        for _ in layers:
            block(x, height[s - 1], "conv")
            x += w + gap
        first, last = layers[0][1], layers[-1][1]
        stage_label(x_start, x - gap, f"conv{s}_D\n{len(layers)}x{first}" + (f"\nlast {last}" if last != first else ""))
        x += 5 * gap
    block(x, height[0], "softmax")
    x += w + 0.25
    box(x, "class\nscores\n$H\\times W$\n$\\times K$")
    x_end = x + 0.9

    # Pooling indices: bracket arrows over the top, innermost for stage 5.
    top = height[0] / 2 + 0.25 + 0.3 * 4
    for s in range(1, 6):
        y = height[0] / 2 + 0.25 + 0.3 * (5 - s)
        x0, x1 = pool_x[s] + w / 2, unpool_x[s] + w / 2
        top0, top1 = base + height[s] / 2, base + height[s - 1] / 2
        ax.plot([x0, x0, x1], [top0, y, y], color=COLORS["pool"], lw=1.6)
        ax.annotate("", xy=(x1, top1), xytext=(x1, y),
                    arrowprops=dict(arrowstyle="-|>", color=COLORS["unpool"], lw=1.6))
    ax.text((pool_x[1] + unpool_x[1]) / 2, top + 0.1,
            "pooling indices: 2 bits per 2x2 window, passed straight to the decoder",
            ha="center", va="bottom", fontsize=10.5, color="#333333")
    ax.text((1.15 + pool_x[5] + w) / 2, -2.55, "encoder: the 13 conv layers of VGG16",
            ha="center", fontsize=11, weight="bold")
    ax.text((unpool_x[5] + x_end - 1.15) / 2, -2.55, "decoder: upsampling by indices",
            ha="center", fontsize=11, weight="bold")

    handles = [Rectangle((0, 0), 1, 1, facecolor=COLORS[k]) for k in ("conv", "pool", "unpool", "softmax")]
    ax.legend(handles, ["conv 3x3 + batch norm + ReLU", "max pool 2x2, stride 2, keeps indices",
                        "upsample with the pooling indices", "softmax over K classes"],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False, fontsize=10.5)
    ax.set_xlim(-0.1, x_end + 0.1)
    ax.set_ylim(-2.7, top + 0.45)
    ax.set_aspect("equal")
    ax.axis("off")
    return _save(fig, "segnet_architecture")


def _grid(ax, values, title, highlight=None, fmt="{:g}", cmap_color="#4C72B0"):
    """Draws a small matrix of numbers; `highlight` is a boolean mask."""
    h, wd = values.shape
    for i in range(h):
        for j in range(wd):
            on = highlight is not None and highlight[i, j]
            ax.add_patch(Rectangle((j, h - 1 - i), 1, 1, facecolor=cmap_color if on else "white",
                                   edgecolor="#555555", alpha=0.85 if on else 1))
            v = values[i, j]
            text = "" if (isinstance(v, float) and np.isnan(v)) else fmt.format(v)
            ax.text(j + 0.5, h - 0.5 - i, text, ha="center", va="center", fontsize=11,
                    color="white" if on else "black")
    ax.set_xlim(-0.05, wd + 0.05)
    ax.set_ylim(-0.05, h + 0.05)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=10)


def pooling() -> Path:
    """Max pooling with argmax, then unpooling that puts each max back."""
    x = np.array([[1, 3, 2, 1], [4, 2, 0, 5], [0, 1, 6, 2], [2, 7, 1, 3]], dtype=float)
    h, w = x.shape
    windows = x.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    arg = windows.argmax(axis=-1)  # position inside each 2x2 window, 0..3
    pooled = windows.max(axis=-1)
    is_max = np.zeros_like(x, dtype=bool)
    for i in range(h // 2):
        for j in range(w // 2):
            di, dj = divmod(arg[i, j], 2)
            is_max[2 * i + di, 2 * j + dj] = True
    unpooled = np.where(is_max, x, 0.0)

    fig, axes = plt.subplots(1, 4, figsize=(11, 3.0), gridspec_kw={"width_ratios": [4, 2, 2, 4]})
    _grid(axes[0], x, "encoder feature map (4x4)", is_max, cmap_color=COLORS["pool"])
    _grid(axes[1], pooled, "max pool 2x2 / 2", np.ones_like(pooled, bool), cmap_color=COLORS["conv"])
    _grid(axes[2], arg, "indices kept\n(position in window)", None, fmt="{:d}")
    _grid(axes[3], unpooled, "decoder: unpooled (sparse)", is_max, cmap_color=COLORS["unpool"])
    for a, b in [(0, 1), (1, 2), (2, 3)]:
        fig.add_artist(matplotlib.patches.ConnectionPatch(
            xyA=(1.0, 0.5), coordsA=axes[a].transAxes, xyB=(0.0, 0.5), coordsB=axes[b].transAxes,
            arrowstyle="-|>", color="#333333", lw=1.2))
    fig.suptitle("Each maximum goes back exactly where it came from; the decoder's convolutions "
                 "then fill in the zeros", fontsize=10, y=0.02, va="bottom")
    return _save(fig, "pooling_indices")


def rle_order() -> Path:
    """The same RLE string decoded row-major and column-major."""
    shape, rle = (4, 6), "3 4 15 3"
    pairs = np.array(rle.split(), dtype=int).reshape(-1, 2)
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for start, length in pairs:  # two runs: a loop is clearer than a trick here
        flat[start - 1:start - 1 + length] = 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.9))
    for ax, order, name in [(axes[0], "C", "row-major, order='C'"), (axes[1], "F", "column-major, order='F'")]:
        numbers = np.arange(1, flat.size + 1).reshape(shape, order=order)
        mask = flat.reshape(shape, order=order).astype(bool)
        _grid(ax, numbers, f"'{rle}' read {name}", mask, fmt="{:d}", cmap_color=COLORS["conv"])
    fig.suptitle("Numbers are the 1-based pixel positions; shaded pixels are the decoded mask",
                 fontsize=10, y=0.02, va="bottom")
    return _save(fig, "rle_order")


def palette() -> Path:
    """The 21 VOC classes and the void colour, as palette indices."""
    from segnet_lib import voc  # the library owns the palette; do not copy it here

    ids = list(range(voc.NUM_CLASSES)) + [voc.IGNORE_LABEL]
    names = list(voc.VOC_CLASSES) + ["void"]
    fig, ax = plt.subplots(figsize=(10, 2.6))
    cols = 11
    for n, (i, name) in enumerate(zip(ids, names)):
        r, c = divmod(n, cols)
        color = voc.VOC_COLORMAP[i] / 255.0
        ax.add_patch(Rectangle((c, -r), 0.95, 0.6, facecolor=color, edgecolor="#555555"))
        light = color.mean() < 0.5
        ax.text(c + 0.475, -r + 0.3, str(i), ha="center", va="center", fontsize=10,
                color="white" if light else "black", weight="bold")
        ax.text(c + 0.475, -r - 0.08, name, ha="center", va="top", fontsize=7.5)
    ax.set_xlim(-0.1, cols)
    ax.set_ylim(-1.5, 0.7)
    ax.axis("off")
    ax.set_title("PASCAL VOC 2012: palette index = class id (the PNG stores the index, "
                 "the palette only colours it)", fontsize=10)
    return _save(fig, "voc_palette")


def _number(v: float) -> str:
    """3 significant digits, without scientific notation for large values."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def benchmarks() -> list[Path]:
    """Bar charts and a Markdown table of book/figures/benchmarks.csv.

    The CSV holds one row per measured case: figure (PNG name), group (one
    panel), benchmark (panel title), case, value, unit. The first case of each
    group is this library's; the others are what it is compared with. The
    numbers are copied from the benchmark scripts' output (recorded in the
    issue notes), not measured here.
    """
    import pandas as pd

    table = pd.read_csv(BENCHMARK_CSV)
    missing = {"figure", "group", "benchmark", "case", "value", "unit"} - set(table.columns)
    if missing:
        raise ValueError(f"{BENCHMARK_CSV}: missing columns {sorted(missing)}")
    paths, lines = [], ["| Benchmark | Implementation | Result | Relative to the first |",
                        "| --- | --- | ---: | ---: |"]
    for figure, panels in table.groupby("figure", sort=False):
        groups = list(panels.groupby("group", sort=False))
        heights = [len(rows) for _, rows in groups]
        fig, axes = plt.subplots(len(groups), 1, squeeze=False,
                                 figsize=(8, sum(0.55 * h + 0.9 for h in heights)),
                                 gridspec_kw={"height_ratios": heights})
        for ax, (group, rows) in zip(axes[:, 0], groups):
            unit = rows["unit"].unique()
            if len(unit) != 1:
                raise ValueError(f"{BENCHMARK_CSV}: group {group!r} mixes units {list(unit)}")
            unit, title, first = unit[0], rows["benchmark"].iloc[0], rows["value"].iloc[0]
            colors = [COLORS["unpool"]] + [COLORS["conv"]] * (len(rows) - 1)
            bars = ax.barh(rows["case"], rows["value"], color=colors)
            ax.bar_label(bars, labels=[f"{_number(v)} {unit}" for v in rows["value"]], padding=3, fontsize=9)
            ax.invert_yaxis()  # first row (ours) on top
            better = {"ms": "shorter is faster", "s": "shorter is faster",
                      "CPU s per image": "shorter is faster", "MB": "shorter is less memory"}
            better = better.get(unit, "longer is faster")
            ax.set_title(title, fontsize=10)
            if rows["value"].max() / rows["value"].min() > 30:
                ax.set_xscale("log")  # else the small bars vanish
                ax.set_xlim(rows["value"].min() / 3, rows["value"].max() * 8)  # room for labels
                unit_note = "log scale, "
            else:
                ax.margins(x=0.3)
                unit_note = ""
            ax.set_xlabel(f"{unit} ({unit_note}{better})")
            ax.spines[["top", "right"]].set_visible(False)
            for i, (_, row) in enumerate(rows.iterrows()):
                r = row["value"] / first
                ratio = "1" if i == 0 else (f"{r:.2g}x" if r < 10 else f"{r:,.0f}x")
                lines.append(f"| {title if i == 0 else ''} | {row['case']} | "
                             f"{_number(row['value'])} {unit} | {ratio} |")
        fig.tight_layout()
        paths.append(_save(fig, f"bench_{figure}"))
    out = FIGURES / "benchmarks_table.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return paths + [out]


FIGURES_BY_NAME = {
    "architecture": architecture,
    "pooling": pooling,
    "rle_order": rle_order,
    "palette": palette,
    "benchmarks": benchmarks,
}


def main(names: list[str]) -> None:
    unknown = set(names) - set(FIGURES_BY_NAME)
    if unknown:
        raise SystemExit(f"unknown figure(s) {sorted(unknown)}; choose from {sorted(FIGURES_BY_NAME)}")
    plt.rcParams.update({"font.size": 9, "svg.hashsalt": "segnet"})
    for name in names or FIGURES_BY_NAME:
        FIGURES_BY_NAME[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
