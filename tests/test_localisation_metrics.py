"""Pixel AUROC and AU-PRO (Lecture 6): known answers, worked by hand, and an
independent, slow computation of the PRO curve by another route."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anomaly_edu.metrics import au_pro, defect_regions, pixel_auroc, pro_at_threshold, pro_curve

# ---------------------------------------------------------------- the slow route


def regions_by_flood_fill(mask: np.ndarray) -> list[set]:
    """The 8-connected regions of a mask, by a flood fill written out (not scipy)."""
    unseen = {(r, c) for r, c in zip(*np.nonzero(mask))}
    regions = []
    while unseen:
        todo, region = [unseen.pop()], set()
        while todo:
            r, c = todo.pop()
            region.add((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if (r + dr, c + dc) in unseen:
                        unseen.remove((r + dr, c + dc))
                        todo.append((r + dr, c + dc))
        regions.append(region)
    return regions


def slow_au_pro(masks, maps, max_fpr=0.3):
    """For every distinct value as threshold, loop over images and regions; then
    the trapezoids of the points up to max_fpr, the last one cut there."""
    regions = [(i, region) for i, mask in enumerate(masks) for region in regions_by_flood_fill(mask)]
    n_normal = sum(int((~m).sum()) for m in masks)
    points = [(0.0, 0.0)]
    for t in sorted({float(v) for m in maps for v in m.ravel()}, reverse=True):
        fp = sum(int(((maps[i] >= t) & ~masks[i]).sum()) for i in range(len(masks)))
        overlaps = [np.mean([maps[i][p] >= t for p in region]) for i, region in regions]
        points.append((fp / n_normal, float(np.mean(overlaps))))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:  # cut the segment at max_fpr
            y1 = y0 + (max_fpr - x0) * (y1 - y0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def random_case(rng, n_images=5, with_ties=True):
    """Images of different sizes; a few defect blobs each (touching at corners
    sometimes), one image without any defect; maps rounded to make ties."""
    masks, maps = [], []
    for i in range(n_images):
        h, w = rng.integers(4, 9, size=2)
        mask = np.zeros((h, w), bool)
        if i > 0:  # image 0 is defect-free
            for _ in range(rng.integers(1, 4)):
                r, c = rng.integers(0, h), rng.integers(0, w)
                mask[r : r + rng.integers(1, 3), c : c + rng.integers(1, 3)] = True
        score_map = rng.random((h, w)) + 0.5 * mask  # informative, not perfect
        masks.append(mask)
        maps.append(np.round(score_map, 1) if with_ties else score_map)
    return masks, maps


# ---------------------------------------------------------------- known answers


def two_regions_and_a_clean_image():
    """Worked by hand in test_au_pro_of_the_worked_example."""
    masks = [np.array([[1, 1, 0, 0, 1]], bool), np.array([[0, 0, 0]], bool)]
    maps = [np.array([[0.9, 0.5, 0.8, 0.1, 0.3]]), np.array([[0.7, 0.2, 0.6]])]
    return masks, maps


def test_a_perfect_map_scores_one_and_a_constant_map_the_diagonal():
    rng = np.random.default_rng(0)
    masks, _ = random_case(rng)
    perfect = [m.astype(float) for m in masks]
    assert au_pro(masks, perfect) == pytest.approx(1.0)
    assert pixel_auroc(masks, perfect) == pytest.approx(1.0)
    constant = [np.full(m.shape, 0.5) for m in masks]
    assert au_pro(masks, constant) == pytest.approx(0.15)  # the line (0, 0)-(1, 1): 0.3 * 0.3 / 2 / 0.3
    assert au_pro(masks, constant, max_fpr=1.0) == pytest.approx(0.5)
    assert pixel_auroc(masks, constant) == pytest.approx(0.5)
    inverted = [1.0 - m for m in perfect]
    assert au_pro(masks, inverted) == pytest.approx(0.0)


def test_au_pro_of_the_worked_example():
    # Normal pixels: 0.8, 0.1 (image 1) and 0.7, 0.2, 0.6 (image 2): five. Regions: {0.9, 0.5}
    # (area 2) and {0.3} (area 1). Thresholds from the top: 0.9 -> PRO (1/2 + 0)/2 = 0.25,
    # FPR 0; 0.8, 0.7, 0.6 -> FPR 0.2, 0.4, 0.6 at PRO 0.25; 0.5 -> PRO 0.5; 0.3 -> PRO 1.
    # Up to FPR 0.3 the curve is flat at 0.25: area 0.075, AU-PRO 0.075 / 0.3 = 0.25.
    # Up to FPR 1: 0.6 * 0.25 + 0.4 * 1 = 0.55.
    masks, maps = two_regions_and_a_clean_image()
    assert au_pro(masks, maps) == pytest.approx(0.25)
    assert au_pro(masks, maps, max_fpr=1.0) == pytest.approx(0.55)
    assert pro_at_threshold(masks, maps, 0.9) == pytest.approx((0.0, 0.25))
    assert pro_at_threshold(masks, maps, 0.5) == pytest.approx((0.6, 0.5))
    assert pro_at_threshold(masks, maps, 0.3) == pytest.approx((0.6, 1.0))
    # plausible wrong answers differ: all defect pixels pooled into one region gives 1/3 at 0.9
    assert au_pro([masks[0], masks[1]], maps) != pytest.approx(1 / 3)


def test_regions_connect_through_corners():
    # 8-connectivity: (0,1) and (1,2) touch at a corner, so the defect is one region of
    # three pixels. At 0.9 one third of it is found, at 0.8 two thirds; the next value,
    # 0.6, is a normal pixel (one of three: FPR 1/3 > 0.3), so up to 0.3 the curve is
    # flat at 2/3: AU-PRO 2/3. With 4-connectivity it would be two regions and 0.5.
    mask = np.array([[1, 1, 0], [0, 0, 1]], bool)
    score_map = np.array([[0.9, 0.8, 0.4], [0.6, 0.3, 0.5]])
    assert defect_regions(mask)[1] == 1
    assert au_pro([mask], [score_map]) == pytest.approx(2 / 3)


def test_ties_between_normal_and_defect_pixels_are_one_threshold():
    # one region of two pixels and two normal pixels, all at the same value but one:
    # threshold 1.0 finds half the region; 0.5 flags everything at once (FPR 1, PRO 1).
    # The curve (0,0) (0,.5) (1,1): up to 0.3, 0.3 * (0.5 + 0.65) / 2 / 0.3 = 0.575.
    mask = np.array([[1, 1, 0, 0]], bool)
    score_map = np.array([[1.0, 0.5, 0.5, 0.5]])
    assert au_pro([mask], [score_map]) == pytest.approx(0.575)
    curve = pro_curve([mask], [score_map])
    assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["pro"]) >= 0)


# ---------------------------------------------------------------- against the slow route


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_fpr", [0.3, 0.05, 1.0])
def test_au_pro_agrees_with_a_slow_computation(seed, max_fpr):
    masks, maps = random_case(np.random.default_rng(seed), with_ties=seed % 2 == 0)
    fast = au_pro(masks, maps, max_fpr=max_fpr)
    assert fast == pytest.approx(slow_au_pro(masks, maps, max_fpr), abs=1e-9)
    assert 0.0 <= fast <= 1.0


def on_polyline(x, y, point) -> bool:
    """Whether ``point`` lies on one of the straight segments joining the corners (x, y)."""
    px, py = point
    for x0, y0, x1, y1 in zip(x, y, x[1:], y[1:]):
        inside = min(x0, x1) - 1e-12 <= px <= max(x0, x1) + 1e-12 and min(y0, y1) - 1e-12 <= py <= max(y0, y1) + 1e-12
        if inside and abs((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)) < 1e-12:
            return True
    return False


def test_pro_curve_passes_through_every_threshold():
    masks, maps = random_case(np.random.default_rng(7))
    curve = pro_curve(masks, maps)
    for t in np.unique(np.concatenate([m.ravel() for m in maps])):
        point = pro_at_threshold(masks, maps, t)
        assert on_polyline(curve["fpr"], curve["pro"], point), f"threshold {t}: {point} is not on the curve"
    assert not on_polyline(curve["fpr"], curve["pro"], (0.5, 0.01))  # the check can fail
    assert (curve["fpr"][0], curve["pro"][0]) == (0.0, 0.0) and (curve["fpr"][-1], curve["pro"][-1]) == (1.0, 1.0)


def test_pixel_auroc_agrees_with_scikit_learn_with_ties_and_tensors():
    for seed in range(4):
        masks, maps = random_case(np.random.default_rng(seed), with_ties=True)
        expected = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
        assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
        tensors = [torch.from_numpy(m).float() for m in maps]
        assert pixel_auroc(masks, tensors) == pytest.approx(expected, abs=1e-6)


def test_float32_maps_are_kept_and_give_the_same_answer():
    masks, maps = random_case(np.random.default_rng(3), with_ties=False)
    single = [m.astype(np.float32) for m in maps]
    assert au_pro(masks, single) == pytest.approx(slow_au_pro(masks, single), abs=1e-9)


# ---------------------------------------------------------------- bad input


def test_bad_input_is_one_clear_error():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    with pytest.raises(ValueError, match="resize the map"):
        au_pro([mask], [np.zeros((4, 5))])
    with pytest.raises(ValueError, match="one anomaly map per mask"):
        au_pro([mask, mask], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="at least one defect region"):
        au_pro([np.zeros((4, 4), bool)], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="NaN"):
        pixel_auroc([mask], [np.full((4, 4), np.nan)])
    with pytest.raises(ValueError, match="max_fpr"):
        au_pro([mask], [np.zeros((4, 4))], max_fpr=0)
    with pytest.raises(ValueError, match="0/False"):
        au_pro([mask.astype(int) * 2], [np.zeros((4, 4))])
