"""Procedural scenes: endless, seeded images with exact instance masks for training and evaluation.

Each scene is drawn with numpy in its *original* frame, a small image whose long side is
``SceneConfig.long_side`` pixels (256 by default, so that the model's 256x256 low-res mask frame and the
scene's own pixels coincide: resizing the long side to 1024 is exactly the 4x upsampling the low-res
masks undergo). Scenes are not always square, so the model also learns the zero padding of the 1024
frame.

What is in a scene, and why:
- a background with a colour gradient and a texture, so that "not an object" is not one flat colour;
- 2-9 objects of many shape kinds (ellipses, rotated rectangles, polygons, stars, rings, blobs,
  superellipses, crescents, crosses, thick strokes), each with a fill (solid, gradient, stripes,
  checker, dots, noise), drawn back to front so later objects occlude earlier ones;
- composite objects with parts and sub-parts inside them, so that a click on a part is ambiguous
  between subpart, part and whole: every level is its own instance, as in SAM's data;
- lighting (a smooth illumination field, gamma, brightness/contrast), shadows, blur and sensor noise.

Every scene is a pure function of ``(seed, index)``: the same pair always gives the same pixels, and two
seeds give unrelated streams, so a held-out set is a seed that training never uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from .prompts import sample_point

__all__ = [
    "SHAPE_KINDS",
    "ProceduralScenes",
    "Scene",
    "SceneConfig",
    "render_scene",
]

FloatArray = np.ndarray
ShapeFn = Callable[[np.random.Generator, np.ndarray, np.ndarray, float, float, float], np.ndarray]


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the scene generator.

    Attributes:
        long_side: long side of the scene's original frame in pixels.
        min_short_ratio: the short side is drawn uniformly from ``[min_short_ratio, 1] * long_side``
            (1.0 gives square scenes only).
        min_objects / max_objects: number of top-level objects per scene (inclusive).
        composite_prob: chance that an object gets parts (and its parts sub-parts).
        min_area_frac: visible instances smaller than this fraction of the scene are dropped.
        noise_max: maximal std of the additive Gaussian pixel noise (0-255 scale).
        blur_prob: chance of a slight Gaussian blur of the whole scene.
        large_object_prob: chance that the first (bottom-most) object of a scene is large, with a
            radius of 0.45-0.8 of the short side and its centre in the middle 60 % of the scene
            (0 draws no extra random number, so a seed gives the same scenes as before the option).
    """

    long_side: int = 256
    min_short_ratio: float = 0.6
    min_objects: int = 2
    max_objects: int = 9
    composite_prob: float = 0.35
    min_area_frac: float = 0.0015
    noise_max: float = 10.0
    blur_prob: float = 0.25
    large_object_prob: float = 0.0


@dataclass
class Scene:
    """One rendered scene in its original frame.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        masks: (K, H, W) bool, one visible instance mask per instance.
        kinds: K shape-kind names (``"whole"`` marks a composite object's union).
        parents: K parent instance indices (-1 for top-level instances), giving the part hierarchy.
    """

    image: np.ndarray
    masks: np.ndarray
    kinds: list[str] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# shapes: each returns a bool mask over the pixel grid, given a centre (cx, cy) and a radius r in px


def _rotate(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, angle: float) -> tuple[np.ndarray, ...]:
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _ellipse(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    u, v = _rotate(xx, yy, cx, cy, rng.uniform(0, np.pi))
    a, b = r, r * rng.uniform(0.35, 1.0)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _rectangle(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    u, v = _rotate(xx, yy, cx, cy, rng.uniform(0, np.pi))
    a, b = r, r * rng.uniform(0.3, 1.0)
    return (np.abs(u) <= a) & (np.abs(v) <= b)


def _polygon_mask(xx: np.ndarray, yy: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test for vertices (px, py), vectorised over the pixel grid."""
    inside = np.zeros(xx.shape, dtype=bool)
    n = len(px)
    for i in range(n):
        x0, y0, x1, y1 = px[i], py[i], px[(i + 1) % n], py[(i + 1) % n]
        if y0 == y1:
            continue
        crosses = (yy >= min(y0, y1)) & (yy < max(y0, y1))
        x_at = x0 + (yy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xx < x_at)
    return inside


def _polygon(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    n = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.55, 1.0, n)
    return _polygon_mask(xx, yy, cx + radii * np.cos(angles), cy + radii * np.sin(angles))


def _star(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    n = int(rng.integers(4, 8))
    angles = rng.uniform(0, 2 * np.pi) + np.arange(2 * n) * np.pi / n
    radii = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.35, 0.6))
    return _polygon_mask(xx, yy, cx + radii * np.cos(angles), cy + radii * np.sin(angles))


def _ring(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    d = np.hypot(xx - cx, yy - cy)
    return (d <= r) & (d >= r * rng.uniform(0.4, 0.75))


def _blob(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    theta = np.arctan2(yy - cy, xx - cx)
    radius = np.full(xx.shape, r * 0.75)
    for k in range(2, 6):
        radius += r * rng.uniform(0.0, 0.25 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(xx - cx, yy - cy) <= radius


def _superellipse(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    u, v = _rotate(xx, yy, cx, cy, rng.uniform(0, np.pi))
    p = rng.uniform(0.6, 4.0)
    b = r * rng.uniform(0.5, 1.0)
    return np.abs(u / r) ** p + np.abs(v / b) ** p <= 1.0


def _crescent(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    shift = r * rng.uniform(0.35, 0.6)
    outer = np.hypot(xx - cx, yy - cy) <= r
    inner = np.hypot(xx - cx - shift * np.cos(angle), yy - cy - shift * np.sin(angle)) <= r * 0.9
    return outer & ~inner


def _cross(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    u, v = _rotate(xx, yy, cx, cy, rng.uniform(0, np.pi))
    w = r * rng.uniform(0.2, 0.4)
    return ((np.abs(u) <= r) & (np.abs(v) <= w)) | ((np.abs(v) <= r) & (np.abs(u) <= w))


def _stroke(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    """A thick curved stroke: points within ``w`` of a quadratic Bezier curve."""
    pts = np.array([cx, cy]) + rng.uniform(-r, r, size=(3, 2))
    t = np.linspace(0.0, 1.0, 24)[:, None]
    curve = (1 - t) ** 2 * pts[0] + 2 * (1 - t) * t * pts[1] + t**2 * pts[2]  # (24, 2) xy
    w = max(2.0, r * rng.uniform(0.12, 0.3))
    d2 = np.full(xx.shape, np.inf)
    for x, y in curve:
        d2 = np.minimum(d2, (xx - x) ** 2 + (yy - y) ** 2)
    return d2 <= w * w


SHAPE_KINDS: dict[str, ShapeFn] = {
    "ellipse": _ellipse,
    "rectangle": _rectangle,
    "polygon": _polygon,
    "star": _star,
    "ring": _ring,
    "blob": _blob,
    "superellipse": _superellipse,
    "crescent": _crescent,
    "cross": _cross,
    "stroke": _stroke,
}
_KIND_NAMES = tuple(SHAPE_KINDS)
# strokes and crosses are thin: keep them rarer so most targets have an interior
_KIND_WEIGHTS = np.array([1.2, 1.2, 1.2, 0.8, 0.8, 1.2, 1.0, 0.7, 0.6, 0.5])
_KIND_WEIGHTS = _KIND_WEIGHTS / _KIND_WEIGHTS.sum()


# ---------------------------------------------------------------------------------------------------
# fills: each returns an (H, W, 3) float image in 0-255 (only the pixels under the shape are used)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random coarse grid upsampled bicubically, shape (H, W)."""
    grid = (rng.uniform(0, 255, size=(cells, cells))).astype(np.uint8)
    up = Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 255.0


def _fill(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    h, w = xx.shape
    c0, c1 = _random_colour(rng), _random_colour(rng)
    kind = rng.choice(["solid", "solid", "gradient", "stripes", "checker", "dots", "noise"])
    if kind == "solid":
        t = np.zeros((h, w), dtype=np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        proj = np.cos(a) * xx + np.sin(a) * yy
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    elif kind == "stripes":
        a = rng.uniform(0, np.pi)
        period = rng.uniform(4, 20)
        t = (np.sin((np.cos(a) * xx + np.sin(a) * yy) * 2 * np.pi / period) > 0).astype(np.float32)
    elif kind == "checker":
        s = rng.uniform(4, 16)
        t = ((np.floor(xx / s) + np.floor(yy / s)) % 2).astype(np.float32)
    elif kind == "dots":
        s = rng.uniform(6, 16)
        fx, fy = (xx % s) - s / 2, (yy % s) - s / 2
        t = (np.hypot(fx, fy) < s * 0.3).astype(np.float32)
    else:
        t = _value_noise(rng, h, w, int(rng.integers(4, 24)))
    # textured fills keep both colours close sometimes, so texture is not always a strong edge cue
    if kind != "solid" and rng.random() < 0.5:
        c1 = c0 + rng.normal(0, 40, size=3)
    return c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]


def _background(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    h, w = xx.shape
    base = _fill(rng, xx, yy)
    # soft, large-scale texture on top so the background is rarely flat
    noise = _value_noise(rng, h, w, int(rng.integers(2, 10)))[..., None]
    return np.clip(base * (0.75 + 0.5 * noise), 0, 255)


# ---------------------------------------------------------------------------------------------------
# assembly


def _place(
    rng: np.random.Generator, h: int, w: int, scale: float, large: bool = False
) -> tuple[float, float, float]:
    """Centre and radius (px) of a top-level object; ``scale`` is the scene's short side."""
    if large:
        r = scale * float(rng.uniform(0.45, 0.8))
        return float(rng.uniform(0.2 * w, 0.8 * w)), float(rng.uniform(0.2 * h, 0.8 * h)), r
    r = scale * float(np.exp(rng.uniform(np.log(0.08), np.log(0.42))))
    cx = rng.uniform(-0.1 * w, 1.1 * w)
    cy = rng.uniform(-0.1 * h, 1.1 * h)
    return cx, cy, r


def render_scene(rng: np.random.Generator, config: SceneConfig | None = None) -> Scene:
    """Draw one scene with the generator ``rng``.

    Returns:
        A ``Scene`` in its original frame: long side ``config.long_side`` px, short side in
        ``[min_short_ratio, 1] * long_side``, landscape or portrait at random.
    """
    cfg = config or SceneConfig()
    long_side = cfg.long_side
    short = round(long_side * rng.uniform(cfg.min_short_ratio, 1.0))
    h, w = (short, long_side) if rng.random() < 0.5 else (long_side, short)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(rng, xx, yy)

    # shapes as drawn, each with its full (unoccluded) extent; occlusion is resolved at the end
    drawn: list[np.ndarray] = []
    kinds: list[str] = []
    parents: list[int] = []
    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    large_first = cfg.large_object_prob > 0 and rng.random() < cfg.large_object_prob
    for i in range(n_objects):
        cx, cy, r = _place(rng, h, w, min(h, w), large=large_first and i == 0)
        kind = str(rng.choice(_KIND_NAMES, p=_KIND_WEIGHTS))
        shape = SHAPE_KINDS[kind](rng, xx, yy, cx, cy, r)
        if not shape.any():
            continue
        if rng.random() < 0.3:
            # a drop shadow under the object: darkens what is below, is not an instance itself
            dx, dy = rng.uniform(-0.15, 0.15, size=2) * r
            shadow = np.roll(shape, (int(dy), int(dx)), axis=(0, 1))
            image = np.where(shadow[..., None], image * rng.uniform(0.45, 0.8), image)
        image = np.where(shape[..., None], _fill(rng, xx, yy), image)
        top = len(drawn)
        drawn.append(shape)
        kinds.append(kind)
        parents.append(-1)
        if rng.random() < cfg.composite_prob:
            _add_parts(rng, xx, yy, image, shape, top, r, drawn, kinds, parents, depth=0)
            kinds[top] = "whole"

    image = _lighting(rng, image, xx, yy, cfg)
    masks, kinds, parents = _visible_instances(drawn, kinds, parents, cfg.min_area_frac * h * w)
    return Scene(image=image, masks=masks, kinds=kinds, parents=parents)


def _add_parts(
    rng: np.random.Generator,
    xx: np.ndarray,
    yy: np.ndarray,
    image: np.ndarray,
    parent_shape: np.ndarray,
    parent: int,
    r: float,
    drawn: list[np.ndarray],
    kinds: list[str],
    parents: list[int],
    depth: int,
) -> None:
    """Draw 1-3 parts inside ``parent_shape`` (in place on ``image``), recursing once for sub-parts."""
    for _ in range(int(rng.integers(1, 4))):
        centre = sample_point(rng, parent_shape)
        if centre is None:
            return
        kind = str(rng.choice(_KIND_NAMES, p=_KIND_WEIGHTS))
        part = SHAPE_KINDS[kind](rng, xx, yy, centre[0], centre[1], r * rng.uniform(0.25, 0.5)) & parent_shape
        if part.sum() < 16:
            continue
        image[:] = np.where(part[..., None], _fill(rng, xx, yy), image)
        index = len(drawn)
        drawn.append(part)
        kinds.append(kind)
        parents.append(parent)
        if depth == 0 and rng.random() < 0.35:
            _add_parts(rng, xx, yy, image, part, index, r * 0.45, drawn, kinds, parents, depth=1)


def _visible_instances(
    drawn: list[np.ndarray], kinds: list[str], parents: list[int], min_area: float
) -> tuple[np.ndarray, list[str], list[int]]:
    """Resolve occlusion: what each instance shows under everything drawn after it and not inside it.

    A part is drawn after its parent but belongs to it, so a parent's visible mask includes its parts;
    anything else drawn later covers it.
    """
    n = len(drawn)
    if n == 0:
        return np.zeros((0, 1, 1), dtype=bool), [], []
    h, w = drawn[0].shape

    def is_descendant(j: int, i: int) -> bool:
        while parents[j] != -1:
            j = parents[j]
            if j == i:
                return True
        return False

    visible: list[np.ndarray] = []
    for i in range(n):
        mask = drawn[i].copy()
        for j in range(i + 1, n):
            if not is_descendant(j, i):
                mask &= ~drawn[j]
        visible.append(mask)
    keep = [i for i in range(n) if visible[i].sum() >= min_area]
    remap = {old: new for new, old in enumerate(keep)}
    out_parents = []
    for i in keep:
        p = parents[i]
        while p != -1 and p not in remap:
            p = parents[p]
        out_parents.append(remap.get(p, -1))
    masks = np.stack([visible[i] for i in keep]) if keep else np.zeros((0, h, w), dtype=bool)
    # the same pixels can remain for a parent and its only visible part: keep one of identical masks
    unique: list[int] = []
    for k in range(len(keep)):
        if not any(np.array_equal(masks[k], masks[u]) for u in unique):
            unique.append(k)
    remap2 = {old: new for new, old in enumerate(unique)}
    return (
        masks[unique],
        [kinds[keep[k]] for k in unique],
        [remap2.get(out_parents[k], -1) for k in unique],
    )


def _lighting(
    rng: np.random.Generator, image: np.ndarray, xx: np.ndarray, yy: np.ndarray, cfg: SceneConfig
) -> np.ndarray:
    """Illumination field, gamma, contrast, blur and noise; returns (H, W, 3) uint8."""
    h, w = xx.shape
    a = rng.uniform(0, 2 * np.pi)
    proj = (np.cos(a) * xx + np.sin(a) * yy) / max(h, w)
    light = 1.0 + rng.uniform(-0.35, 0.35) * proj
    if rng.random() < 0.5:
        # vignette / spot light
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        d = np.hypot(xx - cx, yy - cy) / max(h, w)
        light = light * (1.0 - rng.uniform(0.0, 0.5) * d)
    image = image * light[..., None]
    image = image * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)
    image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.5:
        image = image + rng.normal(0, rng.uniform(0, cfg.noise_max), size=image.shape)
    out = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < cfg.blur_prob:
        pil = Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
        out = np.asarray(pil)
    return out


class ProceduralScenes:
    """An endless, seeded stream of scenes: ``scenes[i]`` is a pure function of ``(seed, i)``.

    ``len()`` is a nominal size used by samplers; any non-negative index works.
    """

    def __init__(self, seed: int, config: SceneConfig | None = None, length: int = 1_000_000) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.config = config or SceneConfig()
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Scene:
        if index < 0:
            raise IndexError(f"scene index must be >= 0, got {index}")
        # a tagged seed sequence: the stream of seed s never overlaps the stream of seed s'
        rng = np.random.default_rng([0x5C3E, self.seed, index])
        return render_scene(rng, self.config)

    def __iter__(self) -> Iterator[Scene]:
        for i in range(self.length):
            yield self[i]
