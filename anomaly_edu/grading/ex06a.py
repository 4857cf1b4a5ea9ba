"""Checks of Exercise 6a (Lecture 6): connected defect regions and the
per-region overlap (PRO) at one threshold."""

from __future__ import annotations

__lecture__ = 6

import numpy as np

from ..metrics import to_numpy
from .machinery import call_watched, call_with_feedback, passed, refuse_the_package

# Libraries whose connected-component labelling would do Exercise 6a.1 for the student.
_LABELLING_LIBRARIES = ("scipy.ndimage", "skimage", "cv2")


def _call_watching(task: str, fn, *args, libraries=_LABELLING_LIBRARIES):
    """Call the student's function as :func:`call_student` does; return its result and
    which of ``libraries`` it called, directly or through any helper, alias or
    import. Found by watching every call while it runs (``sys.setprofile``),
    not by reading the code."""

    reached = set()

    def library_of(name) -> str | None:
        if not isinstance(name, str):
            return None
        return next((lib for lib in libraries if name == lib or name.startswith(lib + ".")), None)

    def watch(frame, event, arg):
        if event == "call":
            found = library_of(frame.f_globals.get("__name__"))
        elif event == "c_call":
            found = library_of(getattr(arg, "__module__", None))
        else:
            return
        if found:
            reached.add(found)

    return call_watched(task, watch, fn, *args), sorted(reached)


def _mask_from_rows(rows: list[str]) -> np.ndarray:
    """A bool mask drawn as text: '#' is a defect pixel, '.' a normal one."""
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


def _region_pairs(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """For two labellings of the same defect pixels: how many regions a has, how
    many b has, and how many distinct (a, b) label pairs the pixels show."""
    fa, fb = a[a > 0], b[b > 0]
    if fa.size == 0:
        return 0, 0, 0
    return len(np.unique(fa)), len(np.unique(fb)), len(np.unique(np.stack([fa, fb]), axis=1).T)


def _regions(count: int) -> str:
    return f"{count} region" + ("" if count == 1 else "s")


def _same_regions(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label arrays cut the same pixels into the same regions, whatever their numbers."""
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    n_a, n_b, n_pairs = _region_pairs(a, b)
    return n_a == n_b == n_pairs


_WRAP = (
    " Negative indices wrap round in numpy (mask[-1, -1] is the opposite corner): check that a neighbour's "
    "row and column lie inside the mask before you look at it"
)


def _connected_regions_cases() -> list[tuple[str, np.ndarray, str]]:
    """(description, mask, hint when the regions are cut) of Exercise 6a.1's check."""
    rng = np.random.default_rng(61)
    one_pass = (
        " The two arms meet only further down: keep following neighbours (a queue or a stack) until none is "
        "left, rather than deciding in one pass over the rows"
    )
    return [
        # (0, 0) and (1, 1) touch only at a corner: one region; (2, 3) is alone. 2 regions, 3 under 4-connectivity.
        ("two pixels that touch only at a corner, and one alone", _mask_from_rows(["#...", ".#..", "...#"]), ""),
        ("a mask without any defect", np.zeros((3, 4), dtype=bool), ""),
        # one region whose two arms meet only in the last row: a single pass over the rows sees two
        ("a U whose two arms meet only at the bottom", _mask_from_rows(["#.#.", "#.#.", "###."]), one_pass),
        # four regions, one pixel in each corner; with negative indices mask[-1, -1] is the opposite corner
        ("one pixel in each corner", _mask_from_rows(["#...#", ".....", ".....", "#...#"]), ""),
        ("a random mask of 7 x 11 pixels", rng.random((7, 11)) < 0.45, ""),
        ("a random mask of 12 x 9 pixels", rng.random((12, 9)) < 0.35, ""),
    ]


def check_connected_regions(connected_regions) -> None:
    """Exercise 6a.1: ``connected_regions(mask)`` labels the 8-connected regions
    of a bool mask (H, W) with a flood fill written by the student (no scipy,
    scikit-image or OpenCV): it returns ``(labels, count)``, ``labels`` an
    integer array of the mask's shape with 0 outside the defects and 1, ...,
    ``count`` for the regions, and leaves the mask alone."""
    task = "Exercise 6a.1 (connected regions)"
    refuse_the_package(task, connected_regions)
    for where, mask, hint in _connected_regions_cases():
        where = f"for {where} (mask shape {mask.shape})"
        labels, count = _labels_and_count(task, where, connected_regions, mask)
        _check_the_regions(task, where, mask, labels, count, hint)
    passed(task)


def _labels_and_count(task: str, where: str, connected_regions, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Call the student's function on a copy of ``mask``; check that it calls no
    labelling library, leaves the mask alone and returns integer labels 1, ...,
    count of the mask's shape and their count."""
    given = mask.copy()
    inside = ". Look only at neighbours inside the mask: 0 <= row < height and 0 <= column < width"
    result, libraries = call_with_feedback(task, where, inside, connected_regions, given, call=_call_watching)
    if libraries:
        raise AssertionError(
            f"{task}: your function calls {', '.join(libraries)}; this task is the flood fill itself: write "
            f"it with plain Python and numpy (Task 2 may use scipy)"
        )
    if not np.array_equal(given, mask):
        raise AssertionError(
            f"{task}: your function changed the mask it was given (for example, clearing pixels to mark them "
            f"as visited); mark visited pixels in the labels array or a copy instead"
        )
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise AssertionError(f"{task}: return a pair (labels, count), got {type(result).__name__}")
    labels, count = result
    labels = np.asarray(to_numpy(labels))
    if labels.shape != mask.shape:
        raise AssertionError(f"{task}: {where} labels must have the mask's shape {mask.shape}, got {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise AssertionError(f"{task}: labels must be whole numbers (an integer array), got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    numbers = np.unique(labels[labels != 0])
    if (labels < 0).any() or not np.array_equal(numbers, np.arange(1, len(numbers) + 1)):
        raise AssertionError(
            f"{task}: {where} your labels are {numbers.tolist()}; number the regions 1, 2, ..., count and "
            f"leave 0 for the pixels outside the defects"
        )
    try:
        count = int(count)
    except (TypeError, ValueError):
        raise AssertionError(f"{task}: count must be a whole number, got {count!r}") from None
    if count != len(numbers):
        raise AssertionError(
            f"{task}: {where} count is {count}, but your labels hold {len(numbers)} regions; they must agree"
        )
    return labels, count


def _check_the_regions(task: str, where: str, mask: np.ndarray, labels: np.ndarray, count: int, hint: str) -> None:
    """Compare the student's regions with the 8-connected regions of the mask
    (scipy's labelling), and say what went wrong when they differ."""
    from scipy import ndimage

    expected, n_expected = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if _same_regions(labels, expected):
        return
    _check_the_regions_cover_the_mask(task, where, mask, labels)
    four, _ = ndimage.label(mask)  # scipy's default structure: 4-connectivity
    if _same_regions(labels, four):
        raise AssertionError(
            f"{task}: {where} you found {_regions(count)} where there are {n_expected}: you joined only pixels "
            f"that share a side (4-connectivity). Pixels that touch at a corner belong to the same region too "
            f"(8-connectivity): look at all 8 neighbours, diagonals included"
        )
    n_got, n_right, n_pairs = _region_pairs(labels, expected)
    if n_pairs == n_right:  # each true region lies in one of yours: you joined some
        h, w = mask.shape
        joined = [r for r in range(1, count + 1) if len(np.unique(expected[labels == r])) > 1]
        across = any(
            {0, h - 1} <= set(rows.tolist()) or {0, w - 1} <= set(cols.tolist())
            for rows, cols in (np.nonzero(labels == r) for r in joined)
        )
        hint = _WRAP if across else " A region holds only pixels connected to each other through defect pixels"
        raise AssertionError(f"{task}: {where} you found {_regions(count)} where there are {n_expected}.{hint}")
    if n_pairs == n_got:  # each of your regions lies in one true region: you cut some
        hint = hint or (
            " Keep following neighbours (a queue or a stack) until none is left: every pixel connected to a "
            "region through defect pixels (sides or corners) belongs to it"
        )
        raise AssertionError(f"{task}: {where} you found {_regions(count)} where there are {n_expected}.{hint}")
    raise AssertionError(
        f"{task}: {where} your regions differ from the 8-connected regions of the mask: expected labels "
        f"(numbers aside)\n{expected}\ngot\n{labels}"
    )


def _check_the_regions_cover_the_mask(task: str, where: str, mask: np.ndarray, labels: np.ndarray) -> None:
    """Every True pixel of the mask, and only those, belongs to a region."""
    missed, extra = mask & (labels == 0), ~mask & (labels != 0)
    if missed.any() or extra.any():
        rows, cols = np.nonzero(missed if missed.any() else extra)
        edge = (
            " They lie on the last row or column: does your loop reach index height - 1 and width - 1?"
            if missed.any() and ((rows == mask.shape[0] - 1) | (cols == mask.shape[1] - 1)).all()
            else ""
        )
        what = "defect pixels got no region (label 0)" if missed.any() else "pixels outside the mask got a region"
        raise AssertionError(
            f"{task}: {where} {int(missed.sum() or extra.sum())} {what}, e.g. at row {rows[0]}, column "
            f"{cols[0]}; every True pixel of the mask, and only those, belongs to a region.{edge}"
        )


def _pro_answers(masks: list[np.ndarray], maps: list[np.ndarray], threshold: float) -> dict:
    """(FPR, PRO) at ``threshold`` the right way ("right") and with each plausible
    mistake. Plain numpy and scipy's labelling, so that the check does not rest
    on the package's own PRO."""
    from scipy import ndimage

    def summary(flag, structure):
        overlaps, pooled_hits, per_image_pooled, per_image_regions = [], 0, [], []
        fp = normal = 0
        fpr_per_image, fpr_per_defect_image, fp_defect_images, normal_defect_images = [], [], 0, 0
        for mask, score_map in zip(masks, maps):
            flagged = flag(score_map)
            labels, count = ndimage.label(mask, structure=structure)
            mine = [flagged[labels == r].mean() for r in range(1, count + 1)]
            overlaps += mine
            pooled_hits += int(flagged[mask].sum())
            image_fp, image_normal = int((flagged & ~mask).sum()), int((~mask).sum())
            fp, normal = fp + image_fp, normal + image_normal
            fpr_per_image.append(image_fp / image_normal)
            if count:
                per_image_pooled.append(flagged[mask].mean())
                per_image_regions.append(np.mean(mine))
                fpr_per_defect_image.append(image_fp / image_normal)
                fp_defect_images, normal_defect_images = (
                    fp_defect_images + image_fp,
                    normal_defect_images + image_normal,
                )
        n_defect = sum(int(m.sum()) for m in masks)
        n_pixels = sum(m.size for m in masks)
        return {
            "fpr": fp / normal,
            "pro": float(np.mean(overlaps)),
            "pooled": pooled_hits / n_defect,
            "per image, pooled": float(np.mean(per_image_pooled)),
            "per image, mean of regions": float(np.mean(per_image_regions)),
            "defect images only": fp_defect_images / normal_defect_images,
            "per image, all images": float(np.mean(fpr_per_image)),
            "per image, defect images": float(np.mean(fpr_per_defect_image)),
            "all pixels": fp / n_pixels,
        }

    eight = np.ones((3, 3), dtype=bool)
    right = summary(lambda m: m >= threshold, eight)
    return {
        "right": right,
        "greater": summary(lambda m: m > threshold, eight),
        "four": summary(lambda m: m >= threshold, None)["pro"],
    }


_PRO_MISTAKES = {
    "pooled": (
        "your PRO is the fraction of ALL defect pixels that are flagged (pixel-level recall), where one large "
        "region outweighs many small ones. Take the fraction flagged of EACH region, then the mean over the regions"
    ),
    "per image, pooled": (
        "you averaged the overlap per IMAGE (flagged defect pixels / defect pixels of each image); PRO averages "
        "over REGIONS: take the fraction flagged of each region, and the mean over all regions of all images"
    ),
    "per image, mean of regions": (
        "you averaged the regions within each image, then averaged the images; PRO is one mean over all regions "
        "of all images, so an image with two defects counts twice"
    ),
    "four": (
        "you split regions whose pixels touch only at a corner (4-connectivity, also the default structure of "
        "scipy.ndimage.label): regions are 8-connected (pass structure=np.ones((3, 3)), or use your "
        "connected_regions)"
    ),
}


_FPR_MISTAKES = {
    "defect images only": (
        "your FPR leaves out the defect-free images: the normal pixels of EVERY test image count, those of "
        "images without any defect included"
    ),
    "per image, all images": (
        "you averaged one FPR per image; pool the pixels instead: flagged normal pixels of all images / normal "
        "pixels of all images"
    ),
    "per image, defect images": (
        "you averaged one FPR per image, and over the images with defects only; pool the pixels of ALL images: "
        "flagged normal pixels of all images / normal pixels of all images"
    ),
    "all pixels": "your FPR divides by all pixels; divide by the normal pixels (mask False) only",
}


def _pro_case(rng, shapes, p, defect_free) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random masks and maps of the given shapes (maps rounded to 0.1, so that
    some pixels sit exactly at a threshold); image ``defect_free`` has no defect."""
    masks = [rng.random(shape) < p for shape in shapes]
    masks[defect_free][:] = False
    maps = [np.round(rng.random(shape), 1) for shape in shapes]
    return masks, maps


def _pro_hand_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exercise 6a.2's hand-made case: three images of different sizes, the last
    without defects; at threshold 0.5 every mistake below gives its own (FPR, PRO)."""
    # The hand-made case, threshold 0.5. Image A (4 x 6) has region R1 (row 0, columns 0-3) and
    # region R2 ((2, 4) and (3, 5), touching at a corner); image B (3 x 3) has region R3 (its centre);
    # image C (2 x 4) has no defect.
    #   flagged: R1 1 of 4 (0.9), R2 1 of 2 (0.8), R3 1 of 1 (exactly 0.5);
    #   normal pixels flagged: A 2 of 18 ((0, 4) = 0.6 and (1, 1) = exactly 0.5), B 1 of 8, C 3 of 8.
    # right:        FPR 6/34 = 0.1765,  PRO (1/4 + 1/2 + 1) / 3 = 7/12 = 0.5833
    # map > t:      FPR 5/34 = 0.1471,  PRO (1/4 + 1/2 + 0) / 3 = 0.25
    # pooled:       PRO 3 / 7 = 0.4286 (3 of the 7 defect pixels)
    # per image:    PRO (2/6 + 1) / 2 = 0.6667; mean of regions per image: ((1/4 + 1/2) / 2 + 1) / 2 = 0.6875
    # 4-connected:  R2 is two regions (1 and 0): PRO (1/4 + 1 + 0 + 1) / 4 = 0.5625
    # FPR without C: 3/26 = 0.1154; per image: (2/18 + 1/8 + 3/8) / 3 = 0.2037, defect images only:
    #   (2/18 + 1/8) / 2 = 0.1181; over all pixels: 6/41 = 0.1463
    masks = [
        _mask_from_rows(["####..", "......", "....#.", ".....#"]),
        _mask_from_rows(["...", ".#.", "..."]),
        np.zeros((2, 4), dtype=bool),
    ]
    maps = [
        np.array(
            [
                [0.9, 0.2, 0.1, 0.3, 0.6, 0.1],
                [0.1, 0.5, 0.2, 0.1, 0.1, 0.1],
                [0.2, 0.1, 0.1, 0.1, 0.8, 0.2],
                [0.1, 0.1, 0.1, 0.1, 0.1, 0.3],
            ]
        ),
        np.array([[0.1, 0.1, 0.1], [0.1, 0.5, 0.1], [0.7, 0.1, 0.1]]),
        np.array([[0.6, 0.55, 0.1, 0.1], [0.1, 0.1, 0.9, 0.2]]),
    ]
    return masks, maps


def check_pro_at_threshold(pro_at_threshold) -> None:
    """Exercise 6a.2: ``pro_at_threshold(masks, maps, threshold)`` returns
    ``(fpr, pro)`` for the rule "defect where map >= threshold": FPR = flagged
    normal pixels / normal pixels, over all images (defect-free ones included);
    PRO = the mean over every 8-connected defect region of every image of the
    fraction of that region flagged. Images may differ in size."""
    task = "Exercise 6a.2 (PRO at one threshold)"
    refuse_the_package(task, pro_at_threshold)
    hand_masks, hand_maps = _pro_hand_case()
    hand = "the hand-made case (3 images of 4 x 6, 3 x 3 and 2 x 4 pixels, the last without defects)"
    rng = np.random.default_rng(62)
    random_masks, random_maps = _pro_case(rng, [(9, 12), (11, 8), (10, 10), (6, 7)], 0.3, defect_free=2)
    shuffled = "random masks and maps (4 images of different sizes, one without defects)"
    cases = [
        (hand, hand_masks, hand_maps, (0.5,)),
        (shuffled, random_masks, random_maps, (0.0, 0.3, 0.5, 0.8, 1.1)),
    ]
    for description, masks, maps, thresholds in cases:
        for threshold in thresholds:
            where = f"on {description} at threshold {threshold}"
            masks_in, maps_in = [m.copy() for m in masks], [m.copy() for m in maps]
            one_at_a_time = (
                ". The images differ in size (as real ones do): handle them one at a time in a loop, without "
                "stacking them"
            )
            result = call_with_feedback(task, where, one_at_a_time, pro_at_threshold, masks_in, maps_in, threshold)
            if not all(np.array_equal(a, b) for a, b in zip(masks_in + maps_in, masks + maps)):
                raise AssertionError(f"{task}: your function changed the masks or maps it was given; leave them alone")
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise AssertionError(f"{task}: return a pair (fpr, pro), got {result!r}")
            try:
                fpr, pro = float(result[0]), float(result[1])
            except (TypeError, ValueError):
                raise AssertionError(f"{task}: return two numbers (fpr, pro), got {result!r}") from None
            answers = _pro_answers(masks, maps, threshold)
            right = answers["right"]

            def close(a, b):
                return bool(np.isclose(a, b, rtol=0, atol=1e-6))  # float32 is fine

            fpr_ok, pro_ok = close(fpr, right["fpr"]), close(pro, right["pro"])
            if fpr_ok and pro_ok:
                continue
            expected = f"expected (FPR, PRO) = ({right['fpr']:.4f}, {right['pro']:.4f}), got ({fpr:.4f}, {pro:.4f})"
            if close(fpr, right["pro"]) and close(pro, right["fpr"]):
                raise AssertionError(f"{task}: {where} {expected}: you returned (PRO, FPR); return (FPR, PRO)")
            greater = answers["greater"]
            if close(fpr, greater["fpr"]) and close(pro, greater["pro"]):
                raise AssertionError(
                    f"{task}: {where} {expected}: you flagged the pixels where map > threshold; the rule is "
                    f"map >= threshold, so a pixel exactly at the threshold is flagged"
                )
            hints = []
            if not fpr_ok:
                hint = next((h for k, h in _FPR_MISTAKES.items() if close(fpr, right[k])), None)
                hints.append(
                    hint
                    or "your FPR is off: count the normal pixels (mask False) with map >= threshold in all images, "
                    "and divide by the number of normal pixels of all images"
                )
            if not pro_ok:
                wrong_pro = {**{k: right[k] for k in _PRO_MISTAKES if k != "four"}, "four": answers["four"]}
                hint = next((_PRO_MISTAKES[k] for k, v in wrong_pro.items() if close(pro, v)), None)
                hints.append(
                    hint
                    or "your PRO is off: for each 8-connected region of each mask take the fraction of its pixels "
                    "with map >= threshold, then the mean over all regions of all images"
                )
            hints = "; and ".join(hints)
            raise AssertionError(f"{task}: {where} {expected}. {hints[0].upper()}{hints[1:]}")
    passed(task)
