"""The Lecture 6 exercise checks (connected regions, the PRO of one threshold,
pairing masks with images, loading a pair) accept right answers, reject
plausible wrong ones with feedback that names the mistake, refuse the package's
own functions, and leave the global random state alone (tests/test_exercises.py
checks that for every check of the course, with the right answers of
correct_answers() below); the solutions in the instructor notebooks pass them,
and the committed student versions of Exercises 6a and 6b are current.

The right answers here take other routes than the package (a union-find, a
stack, sets of pixels, os.walk). The notebooks themselves are executed by
tests/test_notebooks.py (which finds every exercise notebook on its own)."""

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from test_exercises import exercise_checks, not_done
from test_exercises_puzzle import (
    assert_the_instructor_solutions_pass_their_checks,
    assert_the_student_version_is_current_and_has_the_stubs,
)

from anomaly_edu import metrics
from anomaly_edu.data import magnetic_tile
from anomaly_edu.grading import ex06a, ex06b

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = ["ex06a_pro.ipynb", "ex06b_masks.ipynb"]
LOCALISATION_CHECKS = ["check_connected_regions", "check_pro_at_threshold", "check_pair_masks", "check_load_pair"]
EIGHT = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
FOUR = [(-1, 0), (1, 0), (0, -1), (0, 1)]


# ------------------------------------------------------------------ Exercise 6a.1: connected regions


def regions_by_union_find(mask, neighbours=EIGHT, wrap=False):
    """Join every defect pixel with its defect neighbours (union-find), then
    number the groups 1, 2, ... in the order of their first pixel. With
    ``wrap``, neighbours off the edge come back on the other side (a mistake)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    parent = {p: p for p in zip(*np.nonzero(mask))}

    def root(p):
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for r, c in list(parent):
        for dr, dc in neighbours:
            q = (r + dr, c + dc)
            if wrap:
                q = (q[0] % h, q[1] % w)
            if q in parent:
                parent[root((r, c))] = root(q)
    labels = np.zeros((h, w), dtype=np.int64)
    numbers = {}
    for p in sorted(parent):
        labels[p] = numbers.setdefault(root(p), len(numbers) + 1)
    return labels, len(numbers)


def regions_by_stack(mask):
    """Another right answer: a depth-first flood fill on Python lists, counted from 1."""
    rows = np.asarray(mask, dtype=bool).tolist()
    h, w = len(rows), len(rows[0])
    labels = [[0] * w for _ in range(h)]
    count = 0
    for r in range(h):
        for c in range(w):
            if rows[r][c] and not labels[r][c]:
                count += 1
                labels[r][c] = count
                stack = [(r, c)]
                while stack:
                    y, x = stack.pop()
                    for dy, dx in EIGHT:
                        if 0 <= y + dy < h and 0 <= x + dx < w and rows[y + dy][x + dx] and not labels[y + dy][x + dx]:
                            labels[y + dy][x + dx] = count
                            stack.append((y + dy, x + dx))
    return np.array(labels), count


def test_the_reference_agrees_with_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random(tuple(rng.integers(1, 12, size=2))) < 0.4
        labels, count = regions_by_union_find(mask)
        expected, n = ndimage.label(mask, structure=np.ones((3, 3)))
        assert count == n and ex06a._same_regions(labels, expected)


@pytest.mark.parametrize("right", [regions_by_union_find, regions_by_stack])
def test_connected_regions_check_accepts_right_answers(right, capsys):
    ex06a.check_connected_regions(right)
    assert "✓" in capsys.readouterr().out


def clears_the_mask(mask):
    """Right regions, but the mask is used as the 'visited' marks."""
    labels, count = regions_by_union_find(mask)
    mask[:] = False
    return labels, count


def one_pass_over_the_rows(mask):
    """Labels each pixel from its already-labelled neighbours (up and left), never merging."""
    mask = np.asarray(mask, dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.int64)
    count = 0
    for r, c in zip(*np.nonzero(mask)):
        seen = [
            labels[r + dr, c + dc]
            for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1))
            if 0 <= r + dr and 0 <= c + dc < mask.shape[1] and labels[r + dr, c + dc]
        ]
        if seen:
            labels[r, c] = min(seen)
        else:
            count += 1
            labels[r, c] = count
    return labels, count


def misses_the_last_row(mask):
    labels, count = regions_by_union_find(np.asarray(mask)[:-1])
    labels = np.vstack([labels, np.zeros((1, mask.shape[1]), dtype=np.int64)])
    kept = np.unique(labels[labels > 0])
    return np.searchsorted(np.r_[0, kept], labels), len(kept)


def numbered_from_zero(mask):
    labels, count = regions_by_union_find(mask)
    return np.where(labels > 0, labels - 1, -1), count


def returns_float_labels(mask):
    labels, count = regions_by_union_find(mask)
    return labels.astype(float), count


def count_off_by_one(mask):
    labels, count = regions_by_union_find(mask)
    return labels, count + 1


def scipy_default(mask):
    return ndimage.label(mask)


def scipy_eight(mask):
    return ndimage.label(mask, structure=np.ones((3, 3)))


def helper_with_scipy(mask):
    return scipy_eight(mask)


def imports_skimage_like_labelling(mask):
    from scipy.ndimage import label as find_regions  # an alias, imported inside

    return find_regions(mask, np.ones((3, 3)))


PACKAGE_WRAPPERS_REGIONS = [
    metrics.defect_regions,
    lambda mask: metrics.defect_regions(mask),
    functools.partial(metrics.defect_regions),
]


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda mask: regions_by_union_find(mask, FOUR), "4-connectivity"),
        (lambda mask: regions_by_union_find(mask, EIGHT, wrap=True), "Negative indices wrap round"),
        (one_pass_over_the_rows, "arms meet only further down"),
        (clears_the_mask, "changed the mask"),
        (misses_the_last_row, "last row or column"),
        (numbered_from_zero, "number the regions 1, 2, ..., count"),
        (returns_float_labels, "whole numbers"),
        (count_off_by_one, "count is 3, but your labels hold 2 regions"),
        (lambda mask: regions_by_union_find(mask)[0], "return a pair"),
        (lambda mask: (regions_by_union_find(mask)[0][:, :-1], 1), "mask's shape"),
        (lambda mask: None, "returned None"),
        (not_done, "not done yet"),
        (scipy_default, "calls scipy.ndimage"),
        (scipy_eight, "calls scipy.ndimage"),
        (helper_with_scipy, "calls scipy.ndimage"),
        (imports_skimage_like_labelling, "calls scipy.ndimage"),
        *[(wrapper, "write it yourself") for wrapper in PACKAGE_WRAPPERS_REGIONS],
    ],
)
def test_connected_regions_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex06a.check_connected_regions(wrong)


def test_watching_calls_gives_back_the_profiler():

    def profiler(frame, event, arg):
        return None

    sys.setprofile(profiler)
    try:
        with pytest.raises(AssertionError):
            ex06a.check_connected_regions(scipy_eight)
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(None)


# ------------------------------------------------------------------ Exercise 6a.2: the PRO of one threshold


def pixel_sets(mask):
    """The regions of a mask as sets of pixels (from the union-find labels)."""
    labels, count = regions_by_union_find(mask)
    return [set(zip(*np.nonzero(labels == r))) for r in range(1, count + 1)]


def pro_reference(masks, maps, threshold):
    """Pixel by pixel, with sets: every region of every image counts once."""
    overlaps, false_positives, normal = [], 0, 0
    for mask, score_map in zip(masks, maps):
        mask, score_map = np.asarray(mask, dtype=bool), np.asarray(score_map)
        for region in pixel_sets(mask):
            overlaps.append(sum(score_map[p] >= threshold for p in region) / len(region))
        for p in zip(*np.nonzero(~mask)):
            normal += 1
            false_positives += bool(score_map[p] >= threshold)
    return false_positives / normal, sum(overlaps) / len(overlaps)


def pro_with_scipy(masks, maps, threshold):
    """Right too: scipy's labelling with the 8-connected structure, float32 maps."""
    overlaps, flagged_normal, normal = [], 0, 0
    for mask, score_map in zip(masks, maps):
        flagged = np.asarray(score_map, dtype=np.float32) >= np.float32(threshold)
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        overlaps += list(ndimage.mean(flagged, labels, range(1, count + 1))) if count else []
        flagged_normal += np.count_nonzero(flagged & ~mask)
        normal += np.count_nonzero(~mask)
    return np.float32(flagged_normal / normal), np.float32(np.mean(overlaps))


def test_the_pro_reference_agrees_with_the_package():
    rng = np.random.default_rng(1)
    for _ in range(5):
        masks, maps = ex06a._pro_case(rng, [(5, 7), (8, 6), (6, 6)], 0.3, defect_free=1)
        for t in (0.2, 0.5, 0.9):
            assert np.allclose(pro_reference(masks, maps, t), metrics.pro_at_threshold(masks, maps, t))


@pytest.mark.parametrize("right", [pro_reference, pro_with_scipy])
def test_pro_check_accepts_right_answers(right, capsys):
    ex06a.check_pro_at_threshold(right)
    assert "✓" in capsys.readouterr().out


def pro_variant(*, strict=False, neighbours=EIGHT, pro="regions", fpr="pooled"):
    """A PRO with one mistake (or several): ``strict`` (map > threshold),
    ``neighbours`` (FOUR: 4-connectivity), ``pro`` ("regions", "pooled",
    "per image", "per image of regions"), ``fpr`` ("pooled", "defect images",
    "per image", "per defect image", "all pixels")."""

    def pro_at_threshold(masks, maps, threshold):
        region_overlaps, hits, defect, image_pooled, image_regions = [], 0, 0, [], []
        fp, normal, fp_d, normal_d, image_fpr, defect_image_fpr, pixels = 0, 0, 0, 0, [], [], 0
        for mask, score_map in zip(masks, maps):
            mask = np.asarray(mask, dtype=bool)
            flagged = score_map > threshold if strict else score_map >= threshold
            labels, count = regions_by_union_find(mask, neighbours)
            mine = [flagged[labels == r].mean() for r in range(1, count + 1)]
            region_overlaps += mine
            hits, defect = hits + flagged[mask].sum(), defect + mask.sum()
            f, n = (flagged & ~mask).sum(), (~mask).sum()
            fp, normal, pixels = fp + f, normal + n, pixels + mask.size
            image_fpr.append(f / n)
            if count:
                image_pooled.append(flagged[mask].mean())
                image_regions.append(np.mean(mine))
                fp_d, normal_d = fp_d + f, normal_d + n
                defect_image_fpr.append(f / n)
        pro_value = {
            "regions": np.mean(region_overlaps),
            "pooled": hits / defect,
            "per image": np.mean(image_pooled),
            "per image of regions": np.mean(image_regions),
        }[pro]
        fpr_value = {
            "pooled": fp / normal,
            "defect images": fp_d / normal_d,
            "per image": np.mean(image_fpr),
            "per defect image": np.mean(defect_image_fpr),
            "all pixels": fp / pixels,
        }[fpr]
        return fpr_value, pro_value

    return pro_at_threshold


def stacks_the_images(masks, maps, threshold):
    flagged = np.stack(maps) >= threshold
    return flagged.mean(), flagged.mean()


def changes_the_maps(masks, maps, threshold):
    for score_map in maps:
        score_map[score_map < threshold] = 0
    return pro_reference(masks, maps, threshold)


def swapped(masks, maps, threshold):
    return pro_reference(masks, maps, threshold)[::-1]


def helper_calling_defect_regions(mask):
    return metrics.defect_regions(mask)


def pro_with_the_package_labels(masks, maps, threshold):
    """Everything written out, except the labelling: the package's defect_regions, through a helper."""
    overlaps, fp, normal = [], 0, 0
    for mask, score_map in zip(masks, maps):
        labels, count = helper_calling_defect_regions(mask)
        flagged = score_map >= threshold
        overlaps += [flagged[labels == r].mean() for r in range(1, count + 1)]
        fp, normal = fp + (flagged & ~mask).sum(), normal + (~mask).sum()
    return fp / normal, np.mean(overlaps)


def pro_from_the_package_curve(masks, maps, threshold):
    from anomaly_edu.metrics import pro_curve

    curve = pro_curve(masks, maps)
    return curve["fpr"][0], curve["pro"][0]


def au_pro_of_the_package(masks, maps, threshold):
    return 0.0, metrics.au_pro(masks, maps)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (pro_variant(pro="pooled"), "pixel-level recall"),
        (pro_variant(pro="per image"), "averaged the overlap per IMAGE"),
        (pro_variant(pro="per image of regions"), "averaged the regions within each image"),
        (pro_variant(fpr="defect images"), "leaves out the defect-free images"),
        (pro_variant(fpr="per image"), "averaged one FPR per image; pool"),
        (pro_variant(fpr="per defect image"), "averaged one FPR per image, and over the images with defects"),
        (pro_variant(fpr="all pixels"), "divides by all pixels"),
        (pro_variant(neighbours=FOUR), "4-connectivity"),
        (pro_variant(strict=True), "map > threshold"),
        (pro_variant(pro="pooled", fpr="defect images"), "pixel-level recall.*leaves out the defect-free|leaves out"),
        (swapped, "you returned \\(PRO, FPR\\)"),
        (stacks_the_images, "differ in size"),
        (changes_the_maps, "changed the masks or maps"),
        (lambda m, s, t: pro_reference(m, s, t)[0], "return a pair|two numbers"),
        (lambda m, s, t: (pro_reference(m, s, t)[0], pro_reference(m, s, 0.6)[1]), "Your PRO is off"),
        (lambda m, s, t: None, "returned None"),
        (not_done, "not done yet"),
        (metrics.pro_at_threshold, "write it yourself"),
        (lambda m, s, t: metrics.pro_at_threshold(m, s, t), "write it yourself"),
        (pro_with_the_package_labels, "write it yourself"),
        (pro_from_the_package_curve, "write it yourself"),
        (au_pro_of_the_package, "write it yourself"),
    ],
)
def test_pro_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex06a.check_pro_at_threshold(wrong)


def test_every_pro_mistake_gives_its_own_number_on_the_hand_made_case():
    """The check's hand-made case tells the mistakes apart: each gives another (FPR, PRO)."""
    masks, maps = ex06a._pro_hand_case()
    answers = [
        pro_variant()(masks, maps, 0.5),
        pro_variant(strict=True)(masks, maps, 0.5),
        pro_variant(neighbours=FOUR)(masks, maps, 0.5),
        *[pro_variant(pro=p)(masks, maps, 0.5) for p in ("pooled", "per image", "per image of regions")],
        *[
            pro_variant(fpr=f)(masks, maps, 0.5)
            for f in ("defect images", "per image", "per defect image", "all pixels")
        ],
    ]
    assert np.allclose(answers[0], (6 / 34, 7 / 12))
    fprs = sorted({round(float(a[0]), 6) for a in answers})
    pros = sorted({round(float(a[1]), 6) for a in answers})
    assert len(fprs) == 6 and len(pros) == 6  # right + 5 FPR variants (with ">"), right + 5 PRO variants (with ">")
    assert min(np.diff(fprs)) > 1e-4 and min(np.diff(pros)) > 1e-4


# ------------------------------------------------------------------ Exercise 6b.1: pairing masks by name


def pair_masks_reference(category_folder):
    """With os.walk, and a dictionary of masks keyed by (defect, name)."""
    folder = Path(category_folder)
    masks = {}
    for where, _, files in os.walk(folder / "ground_truth"):
        for name in files:
            if name.endswith("_mask.png"):
                masks[(Path(where).name, name[: -len("_mask.png")])] = Path(where) / name
    pairs = []
    for where, _, files in os.walk(folder / "test"):
        defect = Path(where).name
        for name in sorted(f for f in files if f.endswith(".png")):
            image = Path(where) / name
            if defect == "good":
                pairs.append((image, None))
            elif (defect, image.stem) in masks:
                pairs.append((image, masks[(defect, image.stem)]))
            else:
                raise FileNotFoundError(f"no mask for the image {image}")
    return pairs


def pair_masks_strings(category_folder):
    """Right too: string paths, defect images first, a ValueError that names the image."""
    pairs, good = [], []
    test = os.path.join(category_folder, "test")
    for defect in os.listdir(test):
        for name in os.listdir(os.path.join(test, defect)):
            image = os.path.join(test, defect, name)
            if defect == "good":
                good.append((image, None))
                continue
            mask = os.path.join(category_folder, "ground_truth", defect, name.replace(".png", "_mask.png"))
            if not os.path.exists(mask):
                raise ValueError(f"{defect}/{name} has no mask")
            pairs.append((image, mask))
    return pairs + good


@pytest.mark.parametrize("right", [pair_masks_reference, pair_masks_strings])
def test_pair_masks_check_accepts_right_answers(right, capsys):
    ex06b.check_pair_masks(right)
    assert "✓" in capsys.readouterr().out


def zip_sorted(category_folder):
    """The tempting one: sort both lists, zip them."""
    folder = Path(category_folder)
    pairs = [(image, None) for image in sorted((folder / "test" / "good").glob("*.png"))]
    for defect in sorted((folder / "ground_truth").iterdir()):
        images = sorted((folder / "test" / defect.name).glob("*.png"))
        pairs += list(zip(images, sorted(defect.glob("*.png"))))
    return pairs


def zip_sorted_by_number(category_folder):
    """Sorted by the number in the name: right while no file is extra or missing."""
    folder = Path(category_folder)
    pairs = [(image, None) for image in sorted((folder / "test" / "good").glob("*.png"))]
    for defect in sorted((folder / "ground_truth").iterdir()):
        images = sorted((folder / "test" / defect.name).glob("*.png"), key=lambda p: int(p.stem))
        masks = sorted(defect.glob("*.png"), key=lambda p: int(p.stem.split("_")[0]))
        pairs += list(zip(images, masks))
    return pairs


def one_dictionary_for_all_defects(category_folder):
    """Masks looked up by name alone, across the defect folders."""
    folder = Path(category_folder)
    masks = {m.stem[: -len("_mask")]: m for m in (folder / "ground_truth").glob("*/*_mask.png")}
    pairs = []
    for image in sorted((folder / "test").glob("*/*.png")):
        if image.parent.name == "good":
            pairs.append((image, None))
        elif image.stem in masks:
            pairs.append((image, masks[image.stem]))
        else:
            raise FileNotFoundError(f"no mask for {image}")
    return pairs


def skips_images_without_masks(category_folder):
    folder = Path(category_folder)
    pairs = []
    for image in sorted((folder / "test").glob("*/*.png")):
        mask = folder / "ground_truth" / image.parent.name / f"{image.stem}_mask.png"
        if image.parent.name == "good":
            pairs.append((image, None))
        elif mask.is_file():
            pairs.append((image, mask))
    return pairs


def none_for_images_without_masks(category_folder):
    folder = Path(category_folder)
    pairs = []
    for image in sorted((folder / "test").glob("*/*.png")):
        mask = folder / "ground_truth" / image.parent.name / f"{image.stem}_mask.png"
        pairs.append((image, mask if mask.is_file() else None))
    return pairs


def mask_never_looked_at(category_folder):
    """Builds the mask's path without checking that the file is there."""
    folder = Path(category_folder)
    return [
        (
            image,
            None
            if image.parent.name == "good"
            else folder / "ground_truth" / image.parent.name / f"{image.stem}_mask.png",
        )
        for image in sorted((folder / "test").glob("*/*.png"))
    ]


def silent_error(category_folder):
    """Raises, but says nothing about which image."""
    pairs = mask_never_looked_at(category_folder)
    if any(mask is not None and not mask.is_file() for _, mask in pairs):
        raise FileNotFoundError("a mask is missing")
    return pairs


def names_only_the_mask(category_folder):
    pairs = mask_never_looked_at(category_folder)
    for _, mask in pairs:
        if mask is not None and not mask.is_file():
            raise FileNotFoundError(f"missing {mask.name}")
    return pairs


def only_defect_images(category_folder):
    return [(image, mask) for image, mask in pair_masks_reference(category_folder) if mask is not None]


def good_images_with_mask_paths(category_folder):
    folder = Path(category_folder)
    return [
        (image, mask or folder / "ground_truth" / "good" / f"{image.stem}_mask.png")
        for image, mask in pair_masks_reference(category_folder)
    ]


def whole_category(category_folder):
    """Walks the whole category, train/ and ground_truth/ included."""
    folder = Path(category_folder)
    pairs = pair_masks_reference(category_folder)
    return pairs + [(p, None) for p in sorted((folder / "train").rglob("*.png"))]


def raises_on_stray_masks_without_saying(category_folder):
    folder = Path(category_folder)
    for mask in (folder / "ground_truth").glob("*/*_mask.png"):
        if not (folder / "test" / mask.parent.name / f"{mask.stem[:-5]}.png").is_file():
            raise ValueError("stray mask")
    return pair_masks_reference(category_folder)


def path_needed(category_folder):
    return pair_masks_reference(category_folder / "")  # a str has no "/"


def imports_the_mvtec_loader(category_folder):
    from anomaly_edu.data import mvtec

    return mvtec.load_mvtec(Path(category_folder).name, Path(category_folder).parent)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (zip_sorted, "sort order or by position"),
        (zip_sorted_by_number, "sort order or by position"),
        (one_dictionary_for_all_defects, "a mask of another defect type"),
        (skips_images_without_masks, "silently left that image out"),
        (none_for_images_without_masks, "returned None for it without an error"),
        (mask_never_looked_at, "which does not exist"),
        (silent_error, "does not name the image"),
        (names_only_the_mask, "does not name the image"),
        (only_defect_images, "the good images are missing"),
        (good_images_with_mask_paths, "good images have no mask"),
        (whole_category, "a training image"),
        (raises_on_stray_masks_without_saying, "Either ignore a mask without an image or say which"),
        (path_needed, "raised TypeError"),
        (lambda folder: pair_masks_reference(folder) * 2, "appears twice"),
        (lambda folder: {str(i): m for i, m in pair_masks_reference(folder)}, "return a list"),
        (lambda folder: [(str(i),) for i, _ in pair_masks_reference(folder)], "each entry must be a pair"),
        (lambda folder: None, "returned None"),
        (not_done, "not done yet"),
        (imports_the_mvtec_loader, "write it yourself"),
        (lambda folder: magnetic_tile._pairs(Path(folder)), "write it yourself"),
    ],
)
def test_pair_masks_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex06b.check_pair_masks(wrong)


# ------------------------------------------------------------------ Exercise 6b.2: loading a pair


def load_pair_reference(image_path, mask_path):
    """PIL, then numpy; the mask's size compared as (height, width)."""
    image = np.asarray(Image.open(image_path).convert("RGB")) / 255.0
    if mask_path is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    grey = np.asarray(Image.open(mask_path).convert("L"))
    if grey.shape != image.shape[:2]:
        raise ValueError(f"mask {mask_path} has (height, width) {grey.shape}, image {image_path} has {image.shape[:2]}")
    return image, grey > 127


def load_pair_scaled(image_path, mask_path):
    """Right too: float32, the mask scaled to [0, 1] and compared with 0.5, sizes as PIL gives them."""
    with Image.open(image_path) as picture:
        image = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255
        size = picture.size
    if mask_path is None:
        return image, np.zeros((size[1], size[0]), dtype=bool)
    with Image.open(mask_path) as picture:
        if picture.size != size:
            raise RuntimeError(f"{Path(mask_path).name} is {picture.size} but {Path(image_path).name} is {size}")
        return image, np.asarray(picture.convert("L")) / 255 > 0.5


@pytest.mark.parametrize("right", [load_pair_reference, load_pair_scaled])
def test_load_pair_check_accepts_right_answers(right, capsys):
    ex06b.check_load_pair(right)
    assert "✓" in capsys.readouterr().out


def thresholded(rule):
    """load_pair_reference with another rule for the mask's grey values."""

    def load_pair(image_path, mask_path):
        image, _ = load_pair_reference(image_path, None)
        if mask_path is None:
            return image, np.zeros(image.shape[:2], dtype=bool)
        grey = np.asarray(Image.open(mask_path).convert("L"))
        if grey.shape != image.shape[:2]:
            raise ValueError(f"{mask_path} {grey.shape} vs {image_path} {image.shape[:2]}")
        return image, rule(grey)

    return load_pair


def changed(transform_image=None, transform_mask=None):
    def load_pair(image_path, mask_path):
        image, mask = load_pair_reference(image_path, mask_path)
        return (transform_image or (lambda x: x))(image), (transform_mask or (lambda x: x))(mask)

    return load_pair


def mask_not_converted(image_path, mask_path):
    image, _ = load_pair_reference(image_path, None)
    if mask_path is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    mask = np.asarray(Image.open(mask_path)) > 127
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"{mask_path} {mask.shape} vs {image_path} {image.shape}")
    return image, mask


def none_mask_from_pil_size(image_path, mask_path):
    if mask_path is None:
        picture = Image.open(image_path)
        return np.asarray(picture.convert("RGB")) / 255, np.zeros(picture.size, dtype=bool)
    return load_pair_reference(image_path, mask_path)


def resizes_the_mask(image_path, mask_path):
    image = np.asarray(Image.open(image_path).convert("RGB")) / 255
    if mask_path is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    mask = Image.open(mask_path).convert("L").resize(Image.open(image_path).size, Image.NEAREST)
    return image, np.asarray(mask) > 127


def compares_pixel_counts(image_path, mask_path):
    image = np.asarray(Image.open(image_path).convert("RGB")) / 255
    if mask_path is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    grey = np.asarray(Image.open(mask_path).convert("L"))
    if grey.size != image[..., 0].size:
        raise ValueError(f"{mask_path} is {grey.shape[::-1]}, {image_path} is {image.shape[1::-1]}")
    return image, grey.reshape(image.shape[:2]) > 127


def error_without_sizes(image_path, mask_path):
    try:
        return load_pair_reference(image_path, mask_path)
    except ValueError:
        raise ValueError(f"{image_path} and {mask_path} differ in size") from None


def error_without_files(image_path, mask_path):
    try:
        return load_pair_reference(image_path, mask_path)
    except ValueError:
        raise ValueError("the mask and the image differ in size") from None


def reads_with_the_package(image_path, mask_path):
    image = np.repeat(magnetic_tile.read_tile(image_path)[..., None], 3, axis=2) / 255
    return image, magnetic_tile.read_mask(mask_path) if mask_path else np.zeros(image.shape[:2], bool)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (thresholded(lambda g: g != 0), "faint specks"),
        (thresholded(lambda g: g > 0), "faint specks"),
        (thresholded(lambda g: g.astype(bool)), "faint specks"),
        (thresholded(lambda g: g >= 127), "exactly 127"),
        (thresholded(lambda g: g == 255), "soft edges"),
        (thresholded(lambda g: g > 200), "mask pixels are wrong"),
        (thresholded(lambda g: (g > 127).astype(np.uint8)), "bool array"),
        (mask_not_converted, "colour channels"),
        (none_mask_from_pil_size, "\\(width, height\\)"),
        (changed(transform_image=lambda x: (x * 255).astype(np.uint8)), "floats in \\[0, 1\\]"),
        (changed(transform_image=lambda x: x * 255), "floats in \\[0, 1\\]"),
        (changed(transform_image=lambda x: x.mean(axis=2)), "3 channels"),
        (changed(transform_image=lambda x: x[..., ::-1].copy()), "differs from the file's pixels"),
        (changed(transform_mask=lambda m: None), "mask is None"),
        (resizes_the_mask, "returned without an error"),
        (compares_pixel_counts, "as many pixels in another shape"),
        (error_without_sizes, "give both sizes"),
        (error_without_files, "name both files"),
        (lambda i, m: load_pair_reference(i, m)[1], "return a pair"),
        (lambda i, m: None, "returned None"),
        (not_done, "not done yet"),
        (reads_with_the_package, "write it yourself"),
    ],
)
def test_load_pair_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex06b.check_load_pair(wrong)


# ------------------------------------------------------------------ right answers for the shared tests


def correct_answers():
    """For every Lecture 6 check, a call with a right answer."""
    return {
        "check_connected_regions": lambda: ex06a.check_connected_regions(regions_by_union_find),
        "check_pro_at_threshold": lambda: ex06a.check_pro_at_threshold(pro_reference),
        "check_pair_masks": lambda: ex06b.check_pair_masks(pair_masks_reference),
        "check_load_pair": lambda: ex06b.check_load_pair(load_pair_reference),
    }


def test_every_lecture6_check_is_here():
    assert set(LOCALISATION_CHECKS) == set(correct_answers())
    assert set(LOCALISATION_CHECKS) <= set(exercise_checks())


# ------------------------------------------------------------------ the notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_instructor_solutions_pass_their_checks(name, capsys):
    assert_the_instructor_solutions_pass_their_checks(name, capsys)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_student_version_is_current_and_has_the_stubs(name):
    assert_the_student_version_is_current_and_has_the_stubs(name)
