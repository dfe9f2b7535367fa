"""Chinese calligraphy: the TinyMind competition layout (one folder per character), and a builder that renders the
same layout from installed Chinese fonts for users without the competition data (and for tests)."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lit_gans.datamodules.image_folder import ImageFolderDataModule, border_color
from lit_gans.datamodules.preprocessing import SourceFile, Skipped, open_image, square_pad, to_chw_uint8
from lit_gans.validation import check_choice

INK_THRESHOLD = 64  # grey levels between ink and paper


def find_extra_ink(gray: np.ndarray, background: int) -> Optional[int]:
    """Heuristic for the dirty samples of the competition set (small extra characters under a big one): if the
    ink's rows split into bands separated by blank gaps (> 5% of the height) and a band *below* the main one is
    much smaller (under half its width and a third of its ink), return the row where that lower clutter starts.
    A character whose strokes are separated by gaps (二, 三) has bands of comparable width, so it is not flagged."""
    ink = np.abs(gray.astype(np.int16) - background) > INK_THRESHOLD
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    min_gap = max(2, int(0.05 * gray.shape[0]))
    splits = np.flatnonzero(np.diff(rows) > min_gap)
    bands = np.split(rows, splits + 1)
    if len(bands) < 2:
        return None
    stats = []
    for band in bands:
        cols = np.flatnonzero(ink[band[0] : band[-1] + 1].any(axis=0))
        stats.append((int(ink[band[0] : band[-1] + 1].sum()), int(cols[-1] - cols[0] + 1), int(band[0]), int(band[-1])))
    main = max(range(len(bands)), key=lambda i: stats[i][0])
    below = [i for i in range(main + 1, len(bands))]
    small = [i for i in below if stats[i][1] < 0.5 * stats[main][1] and stats[i][0] < stats[main][0] / 3]
    if small and len(small) == len(below):
        return (stats[main][3] + stats[small[0]][2]) // 2
    return None


def load_calligraphy(source: SourceFile, image_size: int, invert: bool, dirty: str) -> Any:
    """Grayscale, (optionally) clean, pad to square on the paper colour keeping the aspect ratio, resize with
    antialiasing, (optionally) invert so that ink is bright. uint8 ``(1, S, S)``, with a note when cleaned."""
    image = open_image(source, "L")
    gray = np.asarray(image)
    background = border_color(image)
    note = ""
    cut = find_extra_ink(gray, background)
    if cut is not None:
        if dirty == "skip":
            raise Skipped("dirty", "extra small characters under the main one")
        if dirty == "crop":
            image, note = image.crop((0, 0, image.width, cut)), "dirty_cropped"
        else:
            note = "dirty_kept"
    image = square_pad(image, background).resize((image_size, image_size), Image.LANCZOS)
    array = to_chw_uint8(image)
    if invert:
        array = 255 - array
    return (array, note) if note else array


class CalligraphyDataModule(ImageFolderDataModule):
    """Chinese calligraphy in the TinyMind competition layout: ``data_dir/<character>/*.jpg|png``, grayscale, any
    size (the competition's are 200 to 400 px a side). Labels are kept: ``classes`` lists the characters in label
    order and ``num_classes`` counts them; ``balanced_classes=True`` samples every character equally often (the
    reference's author lost diversity by training without the labels).

    Example::

        >>> dm = CalligraphyDataModule("tinymind/train", image_size=128)
        >>> dm.image_shape
        (1, 128, 128)

    Args:
        data_dir: the folder that holds one subfolder per character.
        image_size: output side (64 or 128 in the references, README Sources 4).
        invert: make ink bright on a dark background (the competition's scans are dark ink on light paper).
        dirty: what to do with images that carry small extra characters under the main one: ``keep`` (counted
            in the summary), ``crop`` (cut them off, counted) or ``skip`` (leave the image out, counted).
        **kwargs: see :class:`~lit_gans.datamodules.image_folder.CachedImageDataModule`.
    """

    def __init__(
        self,
        data_dir: Union[str, os.PathLike] = "data/calligraphy/train",
        image_size: int = 64,
        invert: bool = False,
        dirty: str = "keep",
        balanced_classes: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("channels", None)
        kwargs.pop("labels", None)
        kwargs.pop("resize", None)
        super().__init__(
            data_dir, resize="pad", labels=True, image_size=image_size, channels=1, balanced_classes=balanced_classes,
            **kwargs,
        )
        self.invert = invert
        self.dirty = check_choice("dirty", dirty, ("keep", "crop", "skip"))

    def cache_params(self) -> dict[str, Any]:
        return {**super().cache_params(), "invert": self.invert, "dirty": self.dirty}

    def preprocess_function(self) -> Callable[[Any], Any]:
        return partial(load_calligraphy, image_size=self.image_size, invert=self.invert, dirty=self.dirty)


# ---------------------------------------------------------------------------------------------- dataset builder
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts", "/Library/Fonts",
             "~/Library/Fonts", "C:/Windows/Fonts")


def font_faces(paths: Optional[Iterable[Union[str, os.PathLike]]] = None) -> list[tuple[str, int, str, set[int]]]:
    """``(path, face index, family name, covered code points)`` of every face of the given font files (default:
    every ``.ttf/.otf/.ttc`` in the usual font folders). Coverage comes from the font's cmap (fontTools'
    ``getBestCmap``): a font without a glyph would draw a box, so only covering fonts are used."""
    from fontTools.ttLib import TTCollection, TTFont

    if paths is None:
        paths = [p for d in FONT_DIRS if Path(d).expanduser().is_dir() for p in sorted(Path(d).expanduser().rglob("*"))
                 if p.suffix.lower() in (".ttf", ".otf", ".ttc")]
    faces = []
    for path in paths:
        path = str(path)
        try:
            fonts = TTCollection(path).fonts if path.lower().endswith(".ttc") else [TTFont(path, lazy=True)]
        except Exception:  # unreadable or unsupported font files are not fonts we can use
            continue
        for index, font in enumerate(fonts):
            cmap = font.getBestCmap() or {}
            family = font["name"].getDebugName(4) or Path(path).stem
            faces.append((path, index, family, set(cmap)))
    return faces


def render_font_dataset(
    out_dir: Union[str, os.PathLike],
    characters: Sequence[str],
    fonts: Optional[Iterable[Union[str, os.PathLike]]] = None,
    images_per_font: int = 4,
    size_range: tuple[int, int] = (200, 400),
    dirty_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Render ``characters`` in every font face that covers them into ``out_dir/<character>/<font>_<i>.png``:
    grayscale, dark ink on light paper, canvases of random size in ``size_range`` (not square), mild random
    affine jitter (rotation up to 4 degrees, shear 0.08, scale 0.85-1.05, shifts) and stroke-width variation, so
    that :class:`CalligraphyDataModule` reads it like the competition data. ``dirty_fraction`` of the images get
    small extra characters under the main one, like the competition's dirty samples (their names end in
    ``_dirty``).

    Returns:
        The font families used for each character (characters no font covers map to an empty list).

    Raises:
        ValueError: when no font covers any of the characters (install one, e.g. Debian's ``fonts-arphic-ukai``).
    """
    rng = random.Random(seed)
    faces = font_faces(fonts)
    out = Path(out_dir)
    used: dict[str, list[str]] = {}
    for char in characters:
        covering = [f for f in faces if ord(char) in f[3]]
        used[char] = [family for _, _, family, _ in covering]
        for path, index, family, _ in covering:
            for i in range(images_per_font):
                w, h = rng.randint(*size_range), rng.randint(*size_range)
                others = [c for c in characters if c != char] or [char]
                extra = [rng.choice(others) for _ in range(2)] if rng.random() < dirty_fraction else []
                image = _render_glyph(char, path, index, w, h, rng, extra)
                folder = out / char
                folder.mkdir(parents=True, exist_ok=True)
                image.save(folder / f"{_slug(family)}_{index}_{i}{'_dirty' if extra else ''}.png")
    if not any(used.values()):
        raise ValueError(
            f"no installed font covers any of {''.join(characters)!r}; install a Chinese font "
            "(Debian: fonts-arphic-ukai, fonts-lxgw-wenkai, fonts-noto-cjk) or pass fonts=[paths]"
        )
    return used


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-") or "font"


def _render_glyph(char: str, path: str, index: int, w: int, h: int, rng: random.Random, extra: Sequence[str]) -> Image.Image:
    paper = rng.randint(225, 250)
    size = int(min(w, h) * (0.72 if not extra else 0.6))
    font = ImageFont.truetype(path, size, index=index)
    glyph = Image.new("L", (w, h), paper)
    draw = ImageDraw.Draw(glyph)
    ink = rng.randint(0, 40)
    stroke = rng.randint(0, max(1, size // 40))
    top = (h - size) // 2 if not extra else int(0.05 * h)
    draw.text(((w - size) // 2, top), char, font=font, fill=ink, stroke_width=stroke, stroke_fill=ink)
    if extra:  # small characters under the main one, like a signature
        small = ImageFont.truetype(path, max(8, size // 6), index=index)
        draw.text((int(0.4 * w), int(top + size * 1.25)), "".join(extra), font=small, fill=ink)
    angle = math.radians(rng.uniform(-4, 4))
    shear, scale = rng.uniform(-0.08, 0.08), rng.uniform(0.85, 1.05)
    dx, dy = rng.uniform(-0.04, 0.04) * w, rng.uniform(-0.04, 0.04) * (h if not extra else 0)
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    cx, cy = w / 2, h / 2
    # inverse map (output -> input) of rotate + shear + scale about the centre, then shift
    a, b, d, e = c, -s + shear, s, c
    matrix = (a, b, cx - a * cx - b * cy - dx, d, e, cy - d * cx - e * cy - dy)
    return glyph.transform((w, h), Image.AFFINE, matrix, resample=Image.BICUBIC, fillcolor=paper)


__all__ = ["CalligraphyDataModule", "find_extra_ink", "font_faces", "load_calligraphy", "render_font_dataset"]
