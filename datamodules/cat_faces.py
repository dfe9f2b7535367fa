"""Cat faces from the CAT dataset (Zhang, Sun and Tang 2008), preprocessed as in the reference cat GANs
(README Sources 1).

Each ``NNNNNNNN_NNN.jpg`` has an annotation ``NNNNNNNN_NNN.jpg.cat`` beside it: ``9 x1 y1 ... x9 y9`` for the left
eye, right eye, mouth, three left-ear points and three right-ear points. The face is levelled by rotating about
the eyes' midpoint, then cropped square, as wide as the distance between the ear bases (left-ear point 1 and
right-ear point 3), with the eyes' midpoint at (0.5, 0.4) of the crop.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from lit_gans.datamodules.image_folder import CachedImageDataModule
from lit_gans.datamodules.preprocessing import (
    SourceFile,
    Skipped,
    left_out_summary,
    open_image,
    scan_folder,
    to_chw_uint8,
)
from lit_gans.validation import check_choice, check_int

GRAY = (128, 128, 128)
#: Where the reference cat GANs download the CAT dataset (the original site is gone; archive.org keeps it).
CAT_DATASET_URLS = (
    "https://archive.org/download/CAT_DATASET/CAT_DATASET_01.zip",
    "https://archive.org/download/CAT_DATASET/CAT_DATASET_02.zip",
    "https://archive.org/download/CAT_DATASET/00000003_015.jpg.cat",  # the dataset's corrected annotation
)
#: The dataset's known errata: this annotation belongs to no image (its numbers are wrong), and the dataset's
#: separately published ``00000003_015.jpg.cat`` is the missing annotation of ``00000003_015.jpg``.
WRONG_ANNOTATIONS = ("00000003_019.jpg.cat",)


def parse_cat_annotation(text: str) -> np.ndarray:
    """The 9 landmarks ``(9, 2)`` of a ``.cat`` file; raises :class:`Skipped` (``malformed_annotation``)."""
    try:
        values = [float(v) for v in text.split()]
    except ValueError as err:
        raise Skipped("malformed_annotation", f"not numbers: {err}") from err
    if len(values) < 19 or values[0] != 9:
        raise Skipped("malformed_annotation", f"expected '9' and 18 coordinates, got {len(values)} numbers")
    return np.asarray(values[1:19], dtype=np.float64).reshape(9, 2)


def level_and_crop_geometry(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The reference's rule on landmarks ``(9, 2)``: swap the eyes when labelled the other way round (the "left"
    eye right of the "right" one, above it, with the mouth right of it), then the eyes' midpoint, the angle that
    levels the eyes (radians), and the crop side (distance between the ear bases once levelled)."""
    left, right, mouth = points[0].copy(), points[1].copy(), points[2]
    if left[0] > right[0] and left[1] < right[1] and mouth[0] > right[0]:
        left, right = right, left
    center = (left + right) / 2
    angle = math.atan2(right[1] - left[1], right[0] - left[0])
    c, s = math.cos(angle), math.sin(angle)
    # rotating the image by `angle` (counter-clockwise on screen) maps p to R (p - center) + center
    rot = np.array([[c, s], [-s, c]])
    levelled = (points - center) @ rot.T + center
    side = abs(levelled[8, 0] - levelled[3, 0])  # right-ear point 3 and left-ear point 1
    return center, angle, side


def crop_cat_face(image: Image.Image, points: np.ndarray, min_size: int, border: str = "pad") -> Image.Image:
    """Level and crop one face; returns the ``side x side`` RGB crop (before resizing).

    Raises:
        Skipped: ``landmarks_outside_image``, ``crop_too_small`` (side < ``min_size``), or ``crop_outside_image``
            with ``border="skip"`` when the crop leaves the image (``border="pad"`` fills with gray, as the
            reference filled the rotated borders).
    """
    w, h = image.size
    if (points < 0).any() or (points[:, 0] >= w).any() or (points[:, 1] >= h).any():
        raise Skipped("landmarks_outside_image", f"image {w}x{h}")
    center, angle, side = level_and_crop_geometry(points)
    if side < min_size:
        raise Skipped("crop_too_small", f"face {side:.0f}px < min_size={min_size}")
    x0, y0 = center[0] - side / 2, center[1] - 0.4 * side
    size = int(round(side))
    c, s = math.cos(angle), math.sin(angle)
    if border == "skip":
        corners = np.array([[x0, y0], [x0 + side, y0], [x0, y0 + side], [x0 + side, y0 + side]])
        original = (corners - center) @ np.array([[c, -s], [s, c]]).T + center
        if (original < 0).any() or (original[:, 0] > w).any() or (original[:, 1] > h).any():
            raise Skipped("crop_outside_image", "the square crop leaves the image")
    # one affine resampling: output pixel (u, v) of the crop <- levelled (x0 + u, y0 + v) <- original image
    a, b = c, -s
    d, e = s, c
    tx = center[0] + c * (x0 - center[0]) - s * (y0 - center[1])
    ty = center[1] + s * (x0 - center[0]) + c * (y0 - center[1])
    return image.transform((size, size), Image.AFFINE, (a, b, tx, d, e, ty), resample=Image.BICUBIC, fillcolor=GRAY)


def load_cat_face(item: tuple[SourceFile, Optional[SourceFile]], image_size: int, min_size: int, border: str) -> np.ndarray:
    """One ``(image, annotation)`` pair to a uint8 ``(3, S, S)`` face, or :class:`Skipped` with the reason."""
    source, annotation = item
    if annotation is None:
        raise Skipped("missing_annotation", f"no {source.name}.cat beside {source}")
    try:
        data = annotation.read_bytes()
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as err:  # also a dangling symlink
        raise Skipped("unreadable_file", f"{annotation}: {err}") from err
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as err:
        raise Skipped("malformed_annotation", f"{annotation}: {err}") from err
    points = parse_cat_annotation(text)
    face = crop_cat_face(open_image(source, "RGB"), points, min_size, border)
    return to_chw_uint8(face.resize((image_size, image_size), Image.LANCZOS))


def read_exclusions(exclude: Union[None, str, os.PathLike, Sequence[str]]) -> set[str]:
    """File names to leave out: a list of names, or a text file with names separated by whitespace."""
    if exclude is None:
        return set()
    if isinstance(exclude, (str, os.PathLike)) and Path(exclude).is_file():
        names = Path(exclude).read_text().split()
    elif isinstance(exclude, str):
        raise FileNotFoundError(f"exclude={exclude!r} is neither a list of file names nor an existing file")
    else:
        names = list(exclude)
    return {os.path.basename(n).removesuffix(".cat") for n in names}


class CatFacesDataModule(CachedImageDataModule):
    """The CAT dataset's faces, levelled and cropped by the landmarks as in the reference cat GANs, RGB in [-1, 1].

    ``data_dir`` may hold the extracted folders ``CAT_00`` ... ``CAT_06``, the downloaded ``CAT_DATASET_0*.zip``
    archives themselves, or one flat folder. Faces whose crop is smaller than ``min_size`` are left out (the
    references' two subsets: ``min_size=64`` gives about 9,300 faces, ``128`` about 6,400); every left-out image is
    counted by reason in :attr:`summary` (also saved beside the cache as JSON).

    Example::

        >>> dm = CatFacesDataModule("cats", image_size=64, min_size=64)
        >>> dm.image_shape
        (3, 64, 64)

    Args:
        data_dir: the raw dataset.
        image_size: output side (64 or 128 in the references).
        min_size: smallest face crop kept, in original pixels (defaults to ``image_size``).
        errata: apply the dataset's known errata (ignore the wrong ``00000003_019.jpg.cat``; the corrected
            ``00000003_015.jpg.cat``, published separately, is used when it is anywhere under ``data_dir``).
        exclude: outliers to leave out (drawings, corrupted or inverted images): file names or a text file of them.
        border: ``pad`` (fill a crop that leaves the image with gray) or ``skip`` (leave such faces out).
        horizontal_flip: random left-right flips while training (off by default).
        download: fetch the two archives and the corrected annotation (:data:`CAT_DATASET_URLS`, about 2 GB) into
            ``data_dir`` when it holds no images; the archives are read as they are, without extracting.
        **kwargs: see :class:`~lit_gans.datamodules.image_folder.CachedImageDataModule`.
    """

    def __init__(
        self,
        data_dir: Union[str, os.PathLike] = "data/cats",
        image_size: int = 64,
        min_size: Optional[int] = None,
        errata: bool = True,
        exclude: Optional[Union[str, Sequence[str]]] = None,
        border: str = "pad",
        horizontal_flip: bool = False,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("channels", None)
        super().__init__(data_dir, image_size=image_size, channels=3, horizontal_flip=horizontal_flip, **kwargs)
        self.min_size = image_size if min_size is None else check_int("min_size", min_size)
        self.errata = errata
        self.exclude = read_exclusions(exclude)
        self.border = check_choice("border", border, ("pad", "skip"))
        self.download = download

    def prepare_data(self) -> Path:
        if self.download and not (self.data_dir.is_dir() and scan_folder(self.data_dir).files):
            self.download_dataset()
        return super().prepare_data()

    def download_dataset(self) -> None:
        """Download :data:`CAT_DATASET_URLS` into ``data_dir``; a failure names the files and where to put them."""
        from torchvision.datasets.utils import download_url

        self.data_dir.mkdir(parents=True, exist_ok=True)
        for url in CAT_DATASET_URLS:
            try:
                download_url(url, str(self.data_dir))
            except Exception as err:
                names = ", ".join(Path(u).name for u in CAT_DATASET_URLS)
                raise FileNotFoundError(
                    f"CatFacesDataModule: could not download {url} ({err}). Put {names} (or the extracted CAT_00 ... "
                    f"CAT_06 folders) in {self.data_dir} yourself, and pass download=False."
                ) from err

    def cache_params(self) -> dict[str, Any]:
        return {
            **super().cache_params(),
            "min_size": self.min_size,
            "errata": self.errata,
            "exclude": sorted(self.exclude),
            "border": self.border,
        }

    def collect_inputs(self) -> tuple[list[Any], list[int], list[str], list[SourceFile], dict[str, Any]]:
        # every file that is not a known non-image file is an image to decode, whatever its name (the annotation
        # names its image: 00000001_000.jpg.cat); the .cat files are the annotations, other sidecars are counted
        listing = scan_folder(self.data_dir)
        images = listing.files
        annotation_files = [f for f in listing.left_out if f.name.endswith(".cat")]
        annotations: dict[str, list[SourceFile]] = {}
        for f in annotation_files:
            if not (self.errata and f.name in WRONG_ANNOTATIONS):
                annotations.setdefault(f.name[: -len(".cat")], []).append(f)
        items, skipped = [], list(listing.skipped)
        for image in images:
            stem = image.name
            if stem in self.exclude:
                skipped.append((str(image), "excluded", "in the exclusion list"))
                continue
            candidates = annotations.get(stem, [])
            # prefer the annotation beside the image (same folder or archive)
            beside = [a for a in candidates if os.path.dirname(str(a)) == os.path.dirname(str(image))]
            items.append((image, (beside or candidates or [None])[0]))
        image_names = {f.name for f in images}
        orphans = sorted(n + ".cat" for n in annotations if n not in image_names)
        other = [f for f in listing.left_out if not f.name.endswith(".cat")]
        extra = {"skipped_before_decoding": skipped, "annotations_without_image": orphans, **left_out_summary(other)}
        return items, [0] * len(items), [], images + annotation_files, extra

    def preprocess_function(self) -> Callable[[Any], np.ndarray]:
        return partial(load_cat_face, image_size=self.image_size, min_size=self.min_size, border=self.border)


__all__ = ["CatFacesDataModule", "crop_cat_face", "level_and_crop_geometry", "parse_cat_annotation", "load_cat_face"]
