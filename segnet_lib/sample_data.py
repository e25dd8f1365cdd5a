"""The embedded sample dataset: a small, generated stand-in for VOC 2012.

The book must run without a 2 GB download, so the project draws its own data:
2,100 small scenes (2,000 to train on, 100 to validate), each with one to
three objects of five VOC classes (aeroplane, car, cat, horse, person) on a
textured background, written in the exact VOC layout (so the same reader and
pipeline serve both) and as an RLE CSV (the seed project's ``train.csv``
format). Version 5 draws 2,000 training scenes instead of 300 (the book's
SegNet, trained from scratch, kept improving with more scenes; notebook 04)
and a void band one pixel wide, on the objects' side of their outlines
(:func:`add_void_band` says why).

It is meant to be a *real* segmentation task, not one a colour threshold
solves: textures are cut from the photographs and textures that ship inside
scikit-image (cat fur from ``chelsea``, backgrounds from ``grass``, ``gravel``,
``brick``, ``moon``, ``coffee``...; the horse is ``skimage.data.horse()``'s
silhouette), objects and backgrounds share colours, objects vary in scale,
position, pose and lighting, cast shadows, overlap each other and are partly
hidden by background clutter (poles, rocks, signs) that is labelled background.
Like VOC, each object outline carries a band of void (255) pixels, one pixel wide.

Everything comes from files inside the scikit-image wheel, read directly with
Pillow (never through ``skimage.data``'s downloader), so generation needs no
network. It is deterministic: the same ``seed`` (and library versions) gives
the same files; each image has its own random stream, so images do not depend
on how many were drawn before them.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from tqdm.auto import tqdm

from segnet_lib import rle_csv, voc
from segnet_lib.files import cache_dir, cached_dir

#: Bump when the generator changes, so cached copies are regenerated.
SAMPLE_VERSION = 5
#: VOC class ids used by the sample data (background + five object classes).
SAMPLE_CLASS_IDS = (0, 1, 7, 8, 13, 15)
#: Pixel order of the RLE strings in the sample's ``train.csv`` / ``val.csv``.
CSV_ORDER = "C"
#: Image sizes ``(height, width)`` and how often each is drawn (VOC is
#: mostly landscape); multiples of 32 so five 2x2 poolings divide them evenly.
SIZES = ((96, 128), (128, 96), (128, 128))
SIZE_PROBS = (0.5, 0.25, 0.25)

AEROPLANE, CAR, CAT, HORSE, PERSON = 1, 7, 8, 13, 15
_OBJECT_CLASSES = (AEROPLANE, CAR, CAT, HORSE, PERSON)
# Width / height of each class's bounding box (the horse's comes from its image).
_ASPECT = {AEROPLANE: 1.7, CAR: 2.0, CAT: 1.0, HORSE: 400 / 328, PERSON: 0.5}
_SUPERSAMPLE = 4  # shapes are drawn 4x larger and box-filtered: soft edges


# --- sources ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _source(name: str) -> Image.Image:
    """An image bundled with scikit-image, as a Pillow image ('L' or 'RGB')."""
    path = resources.files("skimage.data") / name
    with resources.as_file(path) as p, Image.open(p) as img:
        img.load()
        return img.convert("L" if img.mode in ("L", "I", "I;16") else "RGB")


@functools.lru_cache(maxsize=None)
def _horse_silhouette() -> np.ndarray:
    """float32 [328, 400]: 1 on the horse (dark pixels of horse.png), 0 elsewhere."""
    return (np.asarray(_source("horse.png"))[..., 0] < 128).astype(np.float32)


def clear_caches() -> None:
    """Forgets the source images read so far, so the next scene reads the files again."""
    _source.cache_clear()
    _horse_silhouette.cache_clear()


def _resize(arr: np.ndarray, h: int, w: int, resample=Image.BILINEAR) -> np.ndarray:
    """Resizes a float [H, W] array with Pillow."""
    return np.asarray(Image.fromarray(arr.astype(np.float32), "F").resize((w, h), resample))


# Fur-only regions (x0, y0, x1, y1) of chelsea.png: forehead and left cheek,
# so a cat's body is not textured with its own eye.
_FUR_REGIONS = ((125, 0, 330, 80), (0, 90, 125, 300))


def _crop(rng, name: str, h: int, w: int, zoom=(0.6, 1.6), regions=None) -> np.ndarray:
    """A random crop of source ``name`` resized to [h, w] (gray) or [h, w, 3] (colour).

    ``zoom`` > 1 magnifies (a smaller crop is stretched over the output);
    ``regions``: boxes (x0, y0, x1, y1) of the source to crop from (default: all).
    """
    src = _source(name)
    x0, y0, x1, y1 = (regions[rng.integers(len(regions))] if regions
                      else (0, 0) + src.size)
    sw, sh = x1 - x0, y1 - y0
    scale = rng.uniform(*zoom) * max(h / sh, w / sw)
    ch = min(sh, max(4, int(round(h / scale))))
    cw = min(sw, max(4, int(round(w / scale))))
    y = y0 + int(rng.integers(0, sh - ch + 1))
    x = x0 + int(rng.integers(0, sw - cw + 1))
    crop = np.asarray(src.resize((w, h), Image.BILINEAR, box=(x, y, x + cw, y + ch)),
                      dtype=np.float32) / 255.0
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def _smooth_noise(rng, h: int, w: int, cells: int = 4) -> np.ndarray:
    """Low-frequency noise [h, w] in about -1..1 (a bicubic-upsampled random grid)."""
    grid = rng.normal(size=(cells, cells)).astype(np.float32)
    return np.clip(_resize(grid, h, w, Image.BICUBIC), -2.5, 2.5) / 1.5


def _tint(gray: np.ndarray, colour, contrast: float) -> np.ndarray:
    """Colours a grayscale texture: ``colour`` times (1 + contrast * detail)."""
    g = gray.mean(-1) if gray.ndim == 3 else gray
    detail = (g - g.mean())[..., None]
    return np.clip(np.asarray(colour, np.float32) * (1 + contrast * detail * 2), 0, 1)


# --- shapes ----------------------------------------------------------------

def _canvas(h: int, w: int):
    img = Image.new("L", (w * _SUPERSAMPLE, h * _SUPERSAMPLE), 0)
    return img, ImageDraw.Draw(img), w * _SUPERSAMPLE, h * _SUPERSAMPLE


def _finish(img, h: int, w: int) -> np.ndarray:
    return np.asarray(img.resize((w, h), Image.BOX), dtype=np.float32) / 255.0


def _shape_parts(cls: int, h: int, w: int, rng) -> dict:
    """Soft masks float [h, w] of the parts of one object, keyed by part name.

    Coordinates are fractions of the bounding box; each draw perturbs them a
    little (pose, proportions) so no two objects of a class are identical.
    """
    j = lambda s=0.03: rng.uniform(-s, s)  # noqa: E731
    parts = {}
    if cls == HORSE:
        sil = _horse_silhouette()
        return {"body": np.clip(_resize(sil, h, w), 0, 1)}
    if cls == AEROPLANE:
        img, d, W, H = _canvas(h, w)
        fy0, fy1 = 0.38 + j(), 0.64 + j()
        d.ellipse([0.02 * W, fy0 * H, 0.98 * W, fy1 * H], fill=255)  # fuselage
        d.polygon([(0.36 * W, 0.56 * H), (0.6 * W, 0.56 * H),
                   ((0.47 + j(0.08)) * W, 0.98 * H), ((0.39 + j(0.05)) * W, 0.98 * H)], fill=255)
        d.polygon([(0.44 * W, 0.47 * H), (0.58 * W, 0.47 * H),
                   ((0.52 + j(0.05)) * W, (0.26 + j()) * H)], fill=255)  # far wing
        d.polygon([(0.8 * W, 0.52 * H), (0.97 * W, 0.5 * H),
                   ((0.97 + j(0.02)) * W, (0.08 + j()) * H), ((0.9 + j()) * W, 0.08 * H)],
                  fill=255)  # tail fin
        d.ellipse([0.42 * W, 0.6 * H, 0.56 * W, 0.72 * H], fill=255)  # engine
        parts["body"] = _finish(img, h, w)
        img, d, W, H = _canvas(h, w)
        for k in range(6):  # a row of cabin windows
            x = (0.2 + 0.08 * k) * W
            d.ellipse([x, 0.47 * H, x + 0.025 * W, 0.51 * H], fill=255)
        parts["windows"] = _finish(img, h, w) * parts["body"]
        return parts
    if cls == CAR:
        img, d, W, H = _canvas(h, w)
        top = 0.08 + j()
        d.rounded_rectangle([0, 0.38 * H, W, 0.82 * H], radius=0.1 * H, fill=255)
        d.polygon([((0.16 + j()) * W, 0.4 * H), ((0.3 + j()) * W, top * H),
                   ((0.68 + j()) * W, top * H), ((0.84 + j()) * W, 0.4 * H)], fill=255)
        parts["body"] = _finish(img, h, w)
        img, d, W, H = _canvas(h, w)
        d.polygon([(0.22 * W, 0.38 * H), (0.32 * W, (top + 0.06) * H),
                   (0.66 * W, (top + 0.06) * H), (0.77 * W, 0.38 * H)], fill=255)
        parts["windows"] = _finish(img, h, w)
        img, d, W, H = _canvas(h, w)
        r = (0.15 + j(0.02)) * H
        for cx in (0.22, 0.78):
            d.ellipse([cx * W - r, 0.82 * H - r, cx * W + r, 0.82 * H + r], fill=255)
        parts["wheels"] = _finish(img, h, w)
        return parts
    if cls == CAT:
        img, d, W, H = _canvas(h, w)
        d.ellipse([(0.12 + j()) * W, (0.38 + j()) * H, (0.78 + j()) * W, 0.98 * H], fill=255)
        hx, hy, hr = 0.7 + j(), 0.3 + j(), 0.17 + j(0.02)
        d.ellipse([(hx - hr) * W, (hy - hr) * H, (hx + hr) * W, (hy + hr) * H], fill=255)
        for ex in (-0.1, 0.08):  # ears
            d.polygon([((hx + ex) * W, (hy - 0.08) * H), ((hx + ex + 0.07) * W, (hy - 0.1) * H),
                       ((hx + ex + 0.03 + j(0.02)) * W, (hy - hr - 0.12) * H)], fill=255)
        d.line([(0.22 * W, 0.88 * H), ((0.04 + j()) * W, (0.62 + j(0.08)) * H),
                ((0.1 + j()) * W, (0.4 + j(0.08)) * H)], fill=255, width=int(0.07 * W),
               joint="curve")  # tail
        d.rectangle([0.55 * W, 0.6 * H, 0.66 * W, 0.98 * H], fill=255)  # front leg
        parts["body"] = _finish(img, h, w)
        return parts
    if cls == PERSON:
        img, d, W, H = _canvas(h, w)
        d.ellipse([0.36 * W, 0.01 * H, 0.64 * W, 0.15 * H], fill=255)
        parts["head"] = _finish(img, h, w)
        img, d, W, H = _canvas(h, w)
        d.rounded_rectangle([0.2 * W, 0.15 * H, 0.8 * W, 0.55 * H], radius=0.12 * W, fill=255)
        arm = int(0.17 * W)
        for sx, side in ((0.26, -1), (0.74, 1)):
            hand = ((sx + side * rng.uniform(0.0, 0.22)) * W, rng.uniform(0.35, 0.6) * H)
            d.line([(sx * W, 0.2 * H), hand], fill=255, width=arm, joint="curve")
        parts["shirt"] = _finish(img, h, w)
        img, d, W, H = _canvas(h, w)
        leg = int(0.22 * W)
        for sx in (0.38, 0.62):
            d.line([(sx * W, 0.5 * H), ((sx + j(0.12)) * W, 0.99 * H)], fill=255, width=leg)
        parts["legs"] = _finish(img, h, w)
        return parts
    raise ValueError(f"no shape for class {cls}")


# --- textures --------------------------------------------------------------

_SKIN = ((0.93, 0.76, 0.62), (0.78, 0.57, 0.42), (0.55, 0.37, 0.25), (0.36, 0.24, 0.16))
_CLOTHES = ((0.8, 0.1, 0.1), (0.1, 0.2, 0.6), (0.15, 0.15, 0.15), (0.9, 0.9, 0.85),
            (0.2, 0.5, 0.2), (0.9, 0.7, 0.1), (0.45, 0.3, 0.2), (0.5, 0.5, 0.55))
_CAR_PAINT = ((0.75, 0.05, 0.05), (0.1, 0.2, 0.65), (0.9, 0.9, 0.9), (0.08, 0.08, 0.08),
              (0.85, 0.75, 0.1), (0.5, 0.52, 0.55), (0.15, 0.45, 0.2))
_HORSE_COAT = ((0.45, 0.25, 0.12), (0.3, 0.17, 0.08), (0.1, 0.08, 0.07), (0.85, 0.83, 0.8),
               (0.6, 0.45, 0.3))
_PLANE_PAINT = ((0.92, 0.93, 0.95), (0.8, 0.82, 0.85), (0.7, 0.72, 0.75), (0.85, 0.2, 0.15),
                (0.2, 0.35, 0.7))


def _jitter(rng, colour, amount=0.08):
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 1)


def _paint(cls: int, parts: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """Returns (rgb float [h, w, 3], alpha float [h, w]) of one object."""
    h, w = next(iter(parts.values())).shape
    pick = lambda pal: _jitter(rng, pal[rng.integers(len(pal))])  # noqa: E731
    if cls == CAT:
        fur = _crop(rng, "chelsea.png", h, w, zoom=(1.0, 1.5), regions=_FUR_REGIONS)
        if rng.random() < 0.4:  # grey or black cats
            fur = fur.mean(-1, keepdims=True).repeat(3, -1) * rng.uniform(0.35, 1.0)
        return fur, parts["body"]
    if cls == HORSE:
        # A short, glossy coat: fine grain and broad sheen, unlike a cat's stripes.
        rgb = _tint(_crop(rng, "grass.png", h, w, zoom=(2, 4)), pick(_HORSE_COAT), 0.12)
        rgb = np.clip(rgb * (1 + 0.15 * _smooth_noise(rng, h, w, 3))[..., None], 0, 1)
        return rgb, parts["body"]
    if cls == AEROPLANE:
        rgb = _tint(_crop(rng, "moon.png", h, w), pick(_PLANE_PAINT), 0.15)
        if rng.random() < 0.5:  # a livery stripe along the fuselage
            rows = slice(int(0.52 * h), int(0.56 * h) + 1)
            rgb[rows] = _jitter(rng, _CAR_PAINT[rng.integers(len(_CAR_PAINT))])
        win = parts["windows"][..., None]
        rgb = rgb * (1 - win) + 0.15 * win
        return rgb, parts["body"]
    if cls == CAR:
        paint = _tint(_crop(rng, "gravel.png", h, w), pick(_CAR_PAINT), 0.08)
        sky = np.linspace(0.55, 0.15, h, dtype=np.float32)[:, None, None] * np.array(
            [0.7, 0.8, 1.0], np.float32)
        glass = np.broadcast_to(sky, (h, w, 3))
        win, wheel = parts["windows"][..., None], parts["wheels"][..., None]
        rgb = paint * (1 - win) + glass * win
        rgb = rgb * (1 - wheel) + _tint(_crop(rng, "gravel.png", h, w), (0.07,) * 3, 0.5) * wheel
        return rgb, np.maximum(parts["body"], parts["wheels"])
    if cls == PERSON:
        if rng.random() < 0.3:  # a real photo's clothes: the astronaut's suit
            shirt = _crop(rng, "astronaut.png", h, w, zoom=(0.8, 1.5))
        else:
            shirt = _tint(_crop(rng, "brick.png", h, w, zoom=(2, 4)), pick(_CLOTHES), 0.25)
        legs = _tint(_crop(rng, "gravel.png", h, w), pick(_CLOTHES), 0.2)
        head = np.broadcast_to(pick(_SKIN), (h, w, 3))
        alpha = np.zeros((h, w), np.float32)
        rgb = np.zeros((h, w, 3), np.float32)
        for part, tex in (("legs", legs), ("shirt", shirt), ("head", head)):
            a = parts[part]
            rgb = rgb * (1 - a[..., None]) + tex * a[..., None]
            alpha = np.maximum(alpha, a)
        return rgb / np.maximum(alpha, 1e-3)[..., None], alpha
    raise ValueError(f"no texture for class {cls}")


# --- scenes ----------------------------------------------------------------

_GROUND = (("grass.png", ((0.25, 0.45, 0.15), (0.45, 0.5, 0.2), (0.35, 0.35, 0.2))),
           ("gravel.png", ((0.55, 0.5, 0.45), (0.45, 0.4, 0.35), (0.6, 0.55, 0.4))),
           ("brick.png", ((0.6, 0.3, 0.2), (0.55, 0.5, 0.45))),
           ("moon.png", ((0.7, 0.65, 0.55), (0.5, 0.5, 0.5))))
_UPPER = ("sky", "sky", "brick.png", "coffee.png", "camera.png", "grass.png")


def _background(rng, h: int, w: int) -> np.ndarray:
    name, colours = _GROUND[rng.integers(len(_GROUND))]
    ground = _tint(_crop(rng, name, h, w), _jitter(rng, colours[rng.integers(len(colours))]),
                   rng.uniform(0.4, 0.9))
    upper_name = _UPPER[rng.integers(len(_UPPER))]
    if upper_name == "sky":
        top, bottom = _jitter(rng, (0.35, 0.55, 0.85), 0.1), _jitter(rng, (0.8, 0.85, 0.9), 0.08)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        upper = (top * (1 - t) + bottom * t) * np.ones((1, w, 1), np.float32)
        clouds = np.clip(_smooth_noise(rng, h, w, 5) - 0.2, 0, 1)[..., None]
        upper = upper * (1 - clouds) + clouds * 0.95
    elif upper_name in ("coffee.png",):
        upper = _crop(rng, upper_name, h, w)
    else:
        upper = _tint(_crop(rng, upper_name, h, w), _jitter(rng, (0.6, 0.55, 0.5), 0.2), 0.7)
    # A tilted, slightly wavy horizon between the upper scene and the ground.
    horizon = rng.uniform(0.25, 0.65) * h + rng.uniform(-0.15, 0.15) * np.arange(w) \
        + 3 * _smooth_noise(rng, 1, w, 3)[0]
    ground_mask = (np.arange(h)[:, None] > horizon[None, :]).astype(np.float32)[..., None]
    return upper * (1 - ground_mask) + ground * ground_mask


def _clutter(rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A background-class object (a pole, rock, sign or bush): (rgb, alpha) full-size."""
    img, d, W, H = _canvas(h, w)
    kind = rng.integers(4)
    x, y = rng.uniform(0, W), rng.uniform(0.3 * H, H)
    if kind == 0:  # pole
        pw = rng.uniform(0.03, 0.08) * W
        d.rectangle([x, rng.uniform(-0.2, 0.3) * H, x + pw, H], fill=255)
        tex = _tint(_crop(rng, "brick.png", h, w), _jitter(rng, (0.45, 0.4, 0.35), 0.2), 0.3)
    elif kind == 1:  # rock
        r = rng.uniform(0.1, 0.25) * W
        d.ellipse([x - r, y - 0.6 * r, x + r, y + 0.6 * r], fill=255)
        tex = _tint(_crop(rng, "coins.png", h, w), _jitter(rng, (0.5, 0.48, 0.45), 0.15), 0.8)
    elif kind == 2:  # sign with text
        s = rng.uniform(0.12, 0.3) * W
        d.rectangle([x - s, y - 0.6 * s, x + s, y + 0.6 * s], fill=255)
        tex = _tint(_crop(rng, "text.png", h, w), _jitter(rng, (0.8, 0.8, 0.7), 0.2), 1.0)
    else:  # bush
        for _ in range(5):
            r = rng.uniform(0.06, 0.14) * W
            cx, cy = x + rng.uniform(-0.1, 0.1) * W, y + rng.uniform(-0.08, 0.08) * H
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        tex = _tint(_crop(rng, "grass.png", h, w), _jitter(rng, (0.2, 0.4, 0.15), 0.1), 0.9)
    return tex, _finish(img, h, w)


def _shade(alpha: np.ndarray, rng) -> np.ndarray:
    """Lighting on an object: a directional gradient and darker rims (a 3-D look)."""
    h, w = alpha.shape
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    ramp = 0.8 + 0.45 * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    depth = ndimage.distance_transform_edt(alpha > 0.5)
    rim = 0.75 + 0.25 * np.clip(depth / max(2.0, 0.12 * min(h, w)), 0, 1)
    return (ramp * rim)[..., None]


def render_scene(rng, height: int, width: int):
    """Draws one scene.

    Args:
        rng: a NumPy ``Generator`` (the scene's own random stream).
        height, width: image size in pixels.

    Returns:
        ``(image, label_map, instance_map)``: uint8 ``[H, W, 3]``, uint8
        ``[H, W]`` class ids (no void band yet) and uint8 ``[H, W]`` instance
        ids (0 = none), exactly as seen (occluded parts are not labelled).
    """
    h, w = height, width
    canvas = _background(rng, h, w)
    labels = np.zeros((h, w), np.uint8)
    instances = np.zeros((h, w), np.uint8)
    layers = []
    for _ in range(rng.integers(0, 3)):
        layers.append(("clutter", rng.random() < 0.35))  # in front of objects or behind
    n_objects = rng.choice([1, 2, 3], p=[0.5, 0.4, 0.1])
    layers += [("object", None)] * n_objects
    # Behind-clutter first, then objects (later ones occlude earlier ones), then
    # front clutter, which hides parts of objects and is labelled background.
    order = sorted(range(len(layers)), key=lambda k: (
        layers[k][0] == "clutter" and layers[k][1], k))
    instance = 0
    for k in order:
        kind, _ = layers[k]
        if kind == "clutter":
            rgb, alpha = _clutter(rng, h, w)
            canvas = canvas * (1 - alpha[..., None]) + rgb * _shade(alpha, rng) * alpha[..., None]
            hidden = alpha > 0.5
            labels[hidden] = 0
            instances[hidden] = 0
            continue
        cls = int(_OBJECT_CLASSES[rng.integers(len(_OBJECT_CLASSES))])
        # Objects fill about a quarter of the pixels, as in VOC (background ~70%).
        size = rng.uniform(0.8, 1.15) * min(h, w) if n_objects == 1 else \
            rng.uniform(0.55, 0.9) * min(h, w)
        if cls == PERSON:  # tall and thin: a little taller keeps its area comparable
            size = min(1.15 * size, 0.98 * h)
        aspect = _ASPECT[cls] * rng.uniform(0.85, 1.15)
        ow, oh = (size, size / aspect) if aspect >= 1 else (size * aspect, size)
        ow, oh = max(8, int(ow)), max(8, int(oh))
        parts = _shape_parts(cls, oh, ow, rng)
        rgb, alpha = _paint(cls, parts, rng)
        if rng.random() < 0.5:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        rgb = rgb * _shade(alpha, rng)
        # Place it so at least ~70% of the box is inside the image.
        y0 = int(rng.uniform(-0.15 * oh, h - 0.85 * oh))
        x0 = int(rng.uniform(-0.15 * ow, w - 0.85 * ow))
        ys, xs = slice(max(0, y0), min(h, y0 + oh)), slice(max(0, x0), min(w, x0 + ow))
        sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        a = alpha[sub][..., None]
        if a.size == 0:
            continue
        # A soft drop shadow on what is already there.
        shadow = ndimage.gaussian_filter(alpha, 2.0)[sub][..., None]
        sy, sx = min(2, h - ys.stop), min(2, w - xs.stop)
        region = (slice(ys.start + sy, ys.stop + sy), slice(xs.start + sx, xs.stop + sx))
        canvas[region] *= 1 - 0.35 * shadow
        canvas[ys, xs] = canvas[ys, xs] * (1 - a) + rgb[sub] * a
        instance += 1
        inside = a[..., 0] > 0.5
        labels[ys, xs][inside] = cls
        instances[ys, xs][inside] = instance
    # Scene lighting: a global gradient, exposure and colour cast, then sensor noise.
    light = 0.65 + 0.6 * (_smooth_noise(rng, h, w, 2) * 0.5 + 0.5)
    canvas = canvas * light[..., None] * rng.uniform(0.7, 1.2) * _jitter(rng, (1, 1, 1), 0.08)
    canvas = canvas + rng.normal(0, rng.uniform(0.005, 0.03), canvas.shape)
    image = np.clip(canvas * 255 + 0.5, 0, 255).astype(np.uint8)
    return image, labels, instances


def add_void_band(label_map: np.ndarray, width: int = 1, min_area: int = 40) -> np.ndarray:
    """Marks object outlines (and tiny fragments) void, as VOC's annotators did.

    The outermost ``width`` pixels of every object (its pixels with a
    4-neighbour of another label, grown inwards ``width - 1`` times) become
    void. VOC's band is about 5 pixels wide on 500x375 photographs, 1% of the
    size and narrower than the boundary F1 tolerance (0.75% of the diagonal,
    4.7 pixels), so a prediction along the true outline scores a perfect BF;
    one pixel on these 96-128 pixel scenes keeps both proportions (a band on
    both sides of the outline, as in sample data v3 and before, was wider
    than the 1.2-pixel tolerance: a perfect prediction scored BF 0.70).

    Args:
        label_map: uint8 ``[H, W]`` without void.
        width: pixels of each object's rim that become void.
        min_area: segments of an object smaller than this many pixels become
            entirely void (VOC marks objects too small or too hidden to label).

    Returns:
        uint8 ``[H, W]`` with 255 on the band.
    """
    label_map = np.asarray(label_map)
    edge = np.zeros(label_map.shape, bool)
    edge[:-1] |= label_map[:-1] != label_map[1:]
    edge[1:] |= label_map[1:] != label_map[:-1]
    edge[:, :-1] |= label_map[:, :-1] != label_map[:, 1:]
    edge[:, 1:] |= label_map[:, 1:] != label_map[:, :-1]
    if width > 1:
        edge = ndimage.binary_dilation(edge, ndimage.generate_binary_structure(2, 1),
                                       iterations=width - 1)
    out = label_map.copy()
    out[edge & (label_map != 0)] = voc.IGNORE_LABEL
    for cls in np.unique(label_map):
        if cls == 0:
            continue
        segments, n = ndimage.label(label_map == cls)
        if n:
            areas = np.bincount(segments.ravel())
            out[np.isin(segments, np.flatnonzero(areas < min_area)) & (segments > 0)] = \
                voc.IGNORE_LABEL
    return out


def _write_palette_png(path: Path, mask: np.ndarray) -> None:
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    img.putpalette(voc.VOC_COLORMAP.tobytes())
    img.save(path, optimize=False)


def generate(out_dir, seed: int = 0, num_train: int = 2000, num_val: int = 100,
             progress: bool = False) -> Path:
    """Writes the sample dataset in the VOC layout plus RLE CSVs.

    Layout written under ``out_dir``::

        JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette, 255 = void band),
        SegmentationObject/<id>.png, ImageSets/Segmentation/{train,val,trainval}.txt,
        train.csv, val.csv   (id, class, rle, width, height; RLE order 'C', no void)

    Args:
        out_dir: destination folder (created; existing files are overwritten).
        seed: the dataset's seed; image ``k`` uses the stream ``(seed, k)``.
        num_train: number of training images.
        num_val: number of validation images.
        progress: show a tqdm progress bar.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path` (the VOC root).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"need at least one train and one val image, got {num_train}, {num_val}")
    root = Path(out_dir)
    for sub in (voc.IMAGE_DIR, voc.MASK_DIR, "SegmentationObject", voc.SPLIT_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "val": []}
    clean = {"train": {}, "val": {}}
    total = num_train + num_val
    for k in tqdm(range(total), desc="sample data", disable=not progress):
        split = "train" if k < num_train else "val"
        image_id = f"sample_{k:05d}"
        rng = np.random.default_rng([seed, k])
        h, w = SIZES[rng.choice(len(SIZES), p=SIZE_PROBS)]
        image, labels, instances = render_scene(rng, h, w)
        Image.fromarray(image).save(root / voc.IMAGE_DIR / f"{image_id}.jpg", quality=90)
        banded = add_void_band(labels)
        _write_palette_png(root / voc.MASK_DIR / f"{image_id}.png", banded)
        inst = np.where(banded == voc.IGNORE_LABEL, voc.IGNORE_LABEL, instances).astype(np.uint8)
        _write_palette_png(root / "SegmentationObject" / f"{image_id}.png", inst)
        splits[split].append(image_id)
        clean[split][image_id] = labels
    for split, ids in splits.items():
        (root / voc.SPLIT_DIR / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
        rle_csv.write_csv(root / f"{split}.csv", clean[split], order=CSV_ORDER)
    (root / voc.SPLIT_DIR / "trainval.txt").write_text(
        "".join(i + "\n" for i in splits["train"] + splits["val"]))
    return root


def sample_root(seed: int = 0) -> Path:
    """The cached sample dataset's VOC root, generated on first use.

    The copy lives in ``segnet_lib.files.cache_dir()/sample-v<version>-seed<seed>``. It is
    generated in a temporary folder next to it and renamed into place only
    when complete, so an interrupted run never leaves half a dataset, and two
    processes generating at once both end up with the same complete copy.

    Args:
        seed: the dataset's seed.

    Returns:
        :class:`~pathlib.Path` of the root (``JPEGImages/``, ...).
    """
    final = cache_dir() / f"sample-v{SAMPLE_VERSION}-seed{seed}"
    return cached_dir(final, lambda folder: generate(folder, seed=seed),
                      f"segnet_lib sample data v{SAMPLE_VERSION}, seed {seed}")


__all__ = ["generate", "sample_root", "render_scene", "add_void_band", "clear_caches",
           "SAMPLE_CLASS_IDS", "SAMPLE_VERSION", "CSV_ORDER"]
