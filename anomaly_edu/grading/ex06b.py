"""Checks of Exercise 6b (Lecture 6): pairing MVTec's masks with their images,
and loading one pair."""

from __future__ import annotations

__lecture__ = 6

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..metrics import to_numpy
from .machinery import call_with_feedback, passed, refuse_the_package


def _write_png(path, pixels) -> None:
    """Write a uint8 array (H, W) or (H, W, 3) as an image file of the suffix's
    format (.png, .jpg), making its folder."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def _write_mvtec_category(folder, rng, defects: dict, masks: dict, good=("0", "1")) -> dict:
    """A tiny MVTec-layout category: train/good, test/good, test/<defect>/<stem>.png for
    ``defects[defect]`` and ground_truth/<defect>/<stem>_mask.png for ``masks[defect]``.
    Returns {image path: its mask path or None} for the test images that have a
    mask or are good (resolved paths)."""
    folder = folder.resolve()
    _write_png(folder / "train" / "good" / "0.png", rng.integers(0, 256, (6, 6)))
    pairs = {}
    for stem in good:
        path = folder / "test" / "good" / f"{stem}.png"
        _write_png(path, rng.integers(0, 256, (6, 6)))
        pairs[path] = None
    for defect, stems in defects.items():
        for stem in stems:
            _write_png(folder / "test" / defect / f"{stem}.png", rng.integers(0, 256, (6, 6)))
    for defect, stems in masks.items():
        for stem in stems:
            mask = folder / "ground_truth" / defect / f"{stem}_mask.png"
            _write_png(mask, 255 * (rng.random((6, 6)) < 0.3))
            image = folder / "test" / defect / f"{stem}.png"
            if image.is_file():
                pairs[image] = mask
    return pairs


def _check_pairs(task: str, got, folder, expected: dict, where: str) -> None:
    """Compare the student's pairs with the expected {image: mask or None}."""

    def shown(path) -> str:
        try:
            return path.relative_to(folder).as_posix()
        except ValueError:
            return str(path)

    if not isinstance(got, (list, tuple)):
        raise AssertionError(
            f"{task}: return a list of (image path, mask path or None) pairs, got {type(got).__name__}"
        )
    seen = {}
    for item in got:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise AssertionError(
                f"{task}: {where} each entry must be a pair (image path, mask path or None), got {item!r}"
            )
        try:
            image = Path(item[0]).resolve()
            seen_mask = None if item[1] is None else Path(item[1]).resolve()
        except TypeError:
            raise AssertionError(
                f"{task}: {where} each entry must be a pair of paths (str or pathlib.Path; None for no mask), "
                f"got {item!r}"
            ) from None
        if image in seen:
            raise AssertionError(f"{task}: {where} the image {shown(image)} appears twice; list each test image once")
        seen[image] = seen_mask
    extra = sorted(set(seen) - set(expected))
    if extra:
        example = shown(extra[0])
        kind = (
            "a mask listed as an image"
            if "ground_truth" in example
            else "a training image"
            if example.startswith("train/")
            else "not a test image"
        )
        raise AssertionError(
            f"{task}: {where} you returned {example}, {kind}; return the test images test/<defect>/<name>.png "
            f"(good ones included), each with its mask"
        )
    missing = sorted(set(expected) - set(seen))
    if missing:
        if all(expected[m] is None for m in missing):
            raise AssertionError(
                f"{task}: {where} the good images are missing (e.g. {shown(missing[0])}): list them too, each "
                f"paired with None (a good image has no mask)"
            )
        raise AssertionError(
            f"{task}: {where} the test image {shown(missing[0])} is missing from your pairs ({len(missing)} "
            f"missing in all); every test image must be listed"
        )
    for image, mask in expected.items():
        got_mask = seen[image]
        if got_mask == mask:
            continue
        if mask is None:
            raise AssertionError(
                f"{task}: {where} the good image {shown(image)} got {shown(got_mask)}; good images have no mask: "
                f"pair them with None"
            )
        if got_mask is None:
            raise AssertionError(f"{task}: {where} the defect image {shown(image)} got None; its mask is {shown(mask)}")
        if got_mask.name != mask.name:
            raise AssertionError(
                f"{task}: {where} you paired {shown(image)} with {shown(got_mask)}: pairing by sort order or by "
                f"position goes wrong as soon as the names sort differently ('10' before '2') or a file is "
                f"missing or extra. Pair by NAME: the mask of test/<defect>/<name>.png is "
                f"ground_truth/<defect>/<name>_mask.png"
            )
        if got_mask.parent.name != image.parent.name:
            raise AssertionError(
                f"{task}: {where} you paired {shown(image)} with {shown(got_mask)}, a mask of another defect type: "
                f"every defect type numbers its images from the start, so look for the mask in "
                f"ground_truth/<the image's own defect folder>/"
            )
        raise AssertionError(
            f"{task}: {where} {shown(image)} should be paired with {shown(mask)}, got {shown(got_mask)}"
        )


def check_pair_masks(pair_masks) -> None:
    """Exercise 6b.1: ``pair_masks(category_folder)`` lists every test image of an
    MVTec-layout category folder with its mask, by name: ``(test/<defect>/<name>.png,
    ground_truth/<defect>/<name>_mask.png)``, and ``(test/good/<name>.png, None)``;
    a defect image without its mask raises an error that names the image."""
    import tempfile

    task = "Exercise 6b.1 (pairing masks by name)"
    refuse_the_package(task, pair_masks)
    rng = np.random.default_rng(63)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch).resolve()

        def may_be_a_str(err) -> str:
            return (
                " (category_folder may be a str: start with Path(category_folder))"
                if isinstance(err, TypeError)
                else ""
            )

        def run(folder, where):
            return call_with_feedback(task, where, may_be_a_str, pair_masks, str(folder))

        # Names 1, 2, 10 sort as 1, 10, 2 but their masks as 10_mask, 1_mask, 2_mask; both defect
        # types have a 1 and a 10, so a lookup by name alone finds the other type's mask.
        folder = scratch / "main"
        stems = {"crack": ["1", "2", "10"], "scratch": ["1", "3", "10"]}
        expected = _write_mvtec_category(folder, rng, stems, stems)
        where = "on a category with test/crack/1.png, 2.png, 10.png and test/scratch/1.png, 3.png, 10.png:"
        _check_pairs(task, run(folder, where), folder, expected, where)

        # A stray mask (5_mask.png, no image 5.png): pairing by position shifts; by name it is ignored.
        folder = scratch / "stray"
        expected = _write_mvtec_category(folder, rng, {"crack": ["1", "2", "10"]}, {"crack": ["1", "2", "5", "10"]})
        where = "on a category whose ground_truth/crack/ also holds 5_mask.png, a mask without an image:"
        hint = ". Either ignore a mask without an image or say which mask it is (5_mask.png)"
        got = call_with_feedback(
            task, where, hint, pair_masks, str(folder), accept=lambda err: "5_mask.png" in str(err)
        )
        if not isinstance(got, Exception):  # an error that names the stray mask is fine too
            _check_pairs(task, got, folder, expected, where)

        # test/crack/3.png has no mask (test/scratch/3.png has one).
        folder = scratch / "missing"
        expected = _write_mvtec_category(
            folder, rng, {"crack": ["1", "2", "3"], "scratch": ["3"]}, {"crack": ["1", "2"], "scratch": ["3"]}
        )
        where = "on a category where test/crack/3.png has no mask:"
        got = call_with_feedback(task, where, "", pair_masks, str(folder), accept=lambda err: True)
        if isinstance(got, Exception):  # the error this case wants: it must name the image
            message = str(got)
            if "3.png" not in message or "crack" not in message:
                raise AssertionError(
                    f"{task}: {where} your error says {type(got).__name__}: {message!r}, which does not name the "
                    f"image: say which image has no mask (its defect folder and file name, crack/3.png, e.g. its "
                    f"full path) and where its mask was expected"
                )
        else:
            image = (folder / "test" / "crack" / "3.png").resolve()
            listed = {}
            if isinstance(got, (list, tuple)):
                for item in got:
                    if isinstance(item, (list, tuple)) and len(item) == 2:
                        listed[Path(item[0]).resolve()] = item[1]
            if image not in listed:
                raise AssertionError(
                    f"{task}: {where} your function silently left that image out; raise an error that names it "
                    f"(a missing mask means a broken copy of the data set, and a test set that shrinks without a "
                    f"word gives numbers that cannot be compared)"
                )
            mask = listed[image]
            if isinstance(mask, (str, Path)) and not Path(mask).is_file():
                raise AssertionError(
                    f"{task}: {where} you returned the mask {mask}, which does not exist; check that the mask is "
                    f"there, and raise an error naming the image when it is not"
                )
            raise AssertionError(
                f"{task}: {where} your function returned {mask!r} for it without an error; raise an error that "
                f"names the image (only good images have no mask)"
            )
    passed(task)


class _LoadPairFiles(NamedTuple):
    """The image files of Exercise 6b.2's check and the size of the readable ones."""

    part: Path  # RGB
    part_mask: Path  # grey, every level of _MASK_LEVELS
    tile: Path  # grey, JPEG (the magnetic tiles' layout)
    tile_mask: Path  # a grey mask stored as RGB
    small: Path  # a mask smaller than the image
    turned: Path  # a mask of (width, height): as many pixels as the image, in another shape
    height: int
    width: int


_MASK_LEVELS = np.array([0, 1, 2, 3, 60, 126, 127, 128, 129, 200, 254, 255], dtype=np.uint8)  # specks, edges, defect


def _write_load_pair_files(scratch: Path) -> _LoadPairFiles:
    """Write Exercise 6b.2's image and mask files into the folder ``scratch``."""
    rng = np.random.default_rng(64)
    height, width = 9, 13  # not square, so that (width, height) and (height, width) differ
    files = _LoadPairFiles(
        scratch / "part.png",
        scratch / "part_mask.png",
        scratch / "tile.jpg",
        scratch / "tile.png",
        scratch / "small_mask.png",
        scratch / "turned_mask.png",
        height,
        width,
    )
    _write_png(files.part, rng.integers(0, 256, (height, width, 3)))
    grey = _MASK_LEVELS[rng.integers(0, len(_MASK_LEVELS), (height, width))]
    grey.flat[: len(_MASK_LEVELS)] = _MASK_LEVELS  # every level appears
    _write_png(files.part_mask, grey)
    _write_png(files.tile, rng.integers(0, 256, (height, width)))
    _write_png(files.tile_mask, np.repeat(grey[::-1, :, None], 3, axis=2))  # a grey mask stored as RGB
    _write_png(files.small, 255 * (rng.random((7, 11)) < 0.5))
    _write_png(files.turned, 255 * (rng.random((width, height)) < 0.5))
    return files


def check_load_pair(load_pair) -> None:
    """Exercise 6b.2: ``load_pair(image_path, mask_path)`` returns ``(image,
    mask)``: the image as floats in [0, 1] of shape (H, W, 3) (grey images
    converted to RGB), the mask as bool (H, W), True where its grey value is above
    127 (all False when ``mask_path`` is None). A mask of another size than its
    image raises an error naming both files and both sizes."""
    import tempfile

    task = "Exercise 6b.2 (loading an image and its mask)"
    refuse_the_package(task, load_pair)
    with tempfile.TemporaryDirectory() as scratch:
        files = _write_load_pair_files(Path(scratch).resolve())
        cases = [
            ("for part.png (RGB) and part_mask.png (grey, values 0 to 255):", files.part, files.part_mask),
            ("for tile.jpg (grey) and tile.png (a grey mask stored as RGB):", files.tile, files.tile_mask),
            ("for part.png with mask_path None (a good image):", files.part, None),
        ]
        for where, image_path, mask_path in cases:
            result = call_with_feedback(task, where, "", load_pair, image_path, mask_path)
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise AssertionError(f"{task}: return a pair (image, mask), got {type(result).__name__}")
            image, mask = result
            if mask is None:
                raise AssertionError(
                    f"{task}: {where} your mask is None; return an all-False mask of the image's (height, width)"
                )
            size = (files.height, files.width)
            _check_loaded_image(task, where, np.asarray(to_numpy(image)), image_path, size)
            _check_loaded_mask(task, where, np.asarray(to_numpy(mask)), mask_path, size)
        # masks of another (height, width) than the image
        for mask_path, mask_size in ((files.small, (7, 11)), (files.turned, (files.width, files.height))):
            _check_size_error(task, load_pair, files.part, mask_path, mask_size, (files.height, files.width))
    passed(task)


def _check_loaded_image(task: str, where: str, image: np.ndarray, image_path: Path, size: tuple[int, int]) -> None:
    """The image: floats in [0, 1] of shape (height, width, 3), the file's pixels."""
    from PIL import Image

    height, width = size
    with Image.open(image_path) as picture:
        expected_image = np.asarray(picture.convert("RGB"), dtype=np.float64) / 255
    if image.shape == (height, width):
        raise AssertionError(
            f"{task}: {where} your image has shape {image.shape}; return 3 channels (height, width, 3) for "
            f"every image, grey ones included (PIL: .convert('RGB'))"
        )
    if image.shape != (height, width, 3):
        raise AssertionError(
            f"{task}: {where} expected an image of shape (height, width, 3) = {(height, width, 3)}, got {image.shape}"
        )
    if not np.issubdtype(image.dtype, np.floating) or image.max() > 1:
        raise AssertionError(
            f"{task}: {where} your image holds values up to {image.max()} ({image.dtype}); return floats "
            f"in [0, 1] (divide the 8-bit values by 255)"
        )
    if not np.allclose(image, expected_image, atol=1e-6):
        raise AssertionError(
            f"{task}: {where} your image differs from the file's pixels by up to "
            f"{np.abs(image - expected_image).max():.3f}; read it with PIL, .convert('RGB'), divide by 255"
        )


def _check_loaded_mask(task: str, where: str, mask: np.ndarray, mask_path: Path | None, size: tuple[int, int]):
    """The mask: bool of shape (height, width), True where the file's grey value
    is above 127 (all False without a mask file)."""
    from PIL import Image

    height, width = size
    if mask_path is None:
        expected_grey = np.zeros((height, width), dtype=np.uint8)
    else:
        with Image.open(mask_path) as picture:
            expected_grey = np.asarray(picture.convert("L"))
    if mask.shape == (width, height):
        raise AssertionError(
            f"{task}: {where} your mask has shape {mask.shape}, (width, height); numpy arrays are "
            f"(height, width) = {(height, width)}, while PIL's .size is (width, height)"
        )
    if mask.ndim == 3 and mask.shape[:2] == (height, width):
        raise AssertionError(
            f"{task}: {where} your mask has shape {mask.shape}: it still has colour channels; convert it to "
            f"grey first (PIL: .convert('L')), then threshold"
        )
    if mask.shape != (height, width):
        raise AssertionError(f"{task}: {where} expected a mask of shape {(height, width)}, got {mask.shape}")
    if mask.dtype != bool:
        raise AssertionError(f"{task}: {where} your mask is {mask.dtype}; return a bool array (True = defect pixel)")
    if np.array_equal(mask, expected_grey > 127):
        return
    wrong = [
        (
            expected_grey > 0,
            "you counted every non-zero pixel as defect, the faint specks (values 1 to 127) "
            "included; a pixel is a defect pixel when its grey value is above 127",
        ),
        (expected_grey >= 127, "a grey value of exactly 127 is not a defect pixel: the rule is > 127"),
        (
            expected_grey == 255,
            "you kept only the pixels at 255; the soft edges of a drawn defect (128 to "
            "254) are defect pixels too: the rule is grey value > 127",
        ),
    ]
    hint = next((h for answer, h in wrong if np.array_equal(mask, answer)), None)
    hint = hint or "the mask is True where its grey value (PIL: .convert('L')) is above 127, else False"
    raise AssertionError(
        f"{task}: {where} {int((mask != (expected_grey > 127)).sum())} mask pixels are wrong. "
        f"{hint[0].upper()}{hint[1:]}"
    )


def _check_size_error(task: str, load_pair, part: Path, mask_path: Path, mask_size, image_size) -> None:
    """A mask of another size than its image (both sizes as (height, width)): an
    error that names both files and both sizes."""
    import re

    (h, w), (height, width) = mask_size, image_size
    where = f"for part.png ({width} x {height} px, width x height) and {mask_path.name} ({w} x {h} px):"
    got = call_with_feedback(task, where, "", load_pair, part, mask_path, accept=lambda err: True)
    if not isinstance(got, Exception):
        same_count = (
            " It has as many pixels in another shape: compare (height, width), not the numbers of "
            "pixels (numpy's .size)."
            if w * h == width * height
            else ""
        )
        raise AssertionError(
            f"{task}: {where} your function returned without an error; a mask of another size than its "
            f"image does not belong to it (or was saved wrong): raise an error naming both files and "
            f"their sizes, and never resize the mask to fit.{same_count}"
        )
    message = str(got)
    if part.name not in message or mask_path.name not in message:
        raise AssertionError(
            f"{task}: {where} your error says {message!r}; name both files (the image and the mask), so "
            f"that the reader knows which pair to fix"
        )
    numbers = message.replace(str(part), " ").replace(str(mask_path), " ")
    numbers = numbers.replace(part.name, " ").replace(mask_path.name, " ")
    if not all(re.search(rf"(?<!\d){n}(?!\d)", numbers) for n in (w, h, width, height)):
        raise AssertionError(
            f"{task}: {where} your error says {message!r}; give both sizes too (e.g. 'the mask is "
            f"{w} x {h} px but the image is {width} x {height} px')"
        )
