"""The shortcut measured as Puzzle-AE trains (Lecture 5): the seam classifier on puzzles
perturbed against a Puzzle-AE U-Net with the package's own perturbation."""

import pytest
import torch

from anomaly_edu.puzzle_ae import puzzle_input
from anomaly_edu.puzzle_networks import UNet
from anomaly_edu.puzzles import apply_permutation, puzzle_permutations
from anomaly_edu.shortcut import (
    SHORTCUT_PERTURBATIONS,
    permutation_accuracy,
    permutation_accuracy_against_unet,
    perturb_as_puzzle_ae_trains,
    puzzle_dataset,
)


def images(n=8, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def tiles_of_four_greys(n, seed=0):
    """Images whose four tiles have four different grey levels (plus a little noise):
    the content alone, and the seams too, tell which puzzle was applied."""
    noise = 0.05 * torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    levels = torch.tensor([0.0, 0.3, 0.6, 0.9]).view(2, 2).repeat_interleave(14, 0).repeat_interleave(14, 1)
    return (levels + noise).clamp(0, 1)


def unet(seed=0):
    torch.manual_seed(seed)
    return UNet(widths=(4, 8))


@pytest.mark.parametrize("shortcut", list(SHORTCUT_PERTURBATIONS))
def test_the_puzzles_are_perturbed_by_the_packages_own_function_as_puzzle_ae_trains(shortcut):
    network, x = unet(), images()
    perm = puzzle_permutations(2)[5]
    puzzled = apply_permutation(x, perm, 2)
    torch.manual_seed(1)  # Puzzle-AE's training input, its puzzle drawn from one permutation
    in_training = puzzle_input(network, x, perm[None], grid=2, colour=False, eps=0.1, shortcut=shortcut)
    torch.manual_seed(1)
    torch.randint(1, (1,))  # the draw with which puzzle_input picks its puzzle
    ours = perturb_as_puzzle_ae_trains(network, puzzled, x, 0.1, shortcut)
    torch.manual_seed(1)
    torch.randint(1, (1,))
    direct = SHORTCUT_PERTURBATIONS[shortcut](network, puzzled, x, 0.1)
    assert torch.equal(ours, direct) and torch.equal(ours, in_training)


@pytest.mark.parametrize(("shortcut", "bound"), [("clean-target", 0.1), ("published", 0.2)])
def test_the_perturbation_stays_within_its_bound_in_every_batch(shortcut, bound):
    x = images(10)
    puzzled, _ = puzzle_dataset(x, 2, seed=0)
    torch.manual_seed(0)
    perturbed = perturb_as_puzzle_ae_trains(unet(), puzzled, x, 0.1, shortcut, batch_size=3)
    moved = (perturbed - puzzled).abs()
    assert moved.max() <= bound + 1e-6 and moved.max() > 0.05  # the published code's double start: 2 eps
    assert perturbed.min() >= 0 and perturbed.max() <= 1 and not perturbed.requires_grad


def test_the_perturbation_refuses_an_unknown_shortcut_and_mismatched_images():
    x = images(4)
    with pytest.raises(ValueError, match="unknown shortcut 'none'; choose one of published, clean-target"):
        perturb_as_puzzle_ae_trains(unet(), x, x, 0.1, "none")
    with pytest.raises(ValueError, match="one clean image per puzzle"):
        perturb_as_puzzle_ae_trains(unet(), x, x[:2], 0.1)


def test_a_puzzle_the_tiles_give_away_is_read_with_and_without_a_small_perturbation():
    network = unet()
    weights = {k: v.clone() for k, v in network.state_dict().items()}
    result = permutation_accuracy_against_unet(
        network, tiles_of_four_greys(300), tiles_of_four_greys(100, seed=1), eps=0.01, epochs=4, batch_size=16
    )
    assert result["chance"] == pytest.approx(1 / 23)
    assert result["unperturbed"] > 0.9 and result["perturbed"] > 0.9  # four grey levels 0.3 apart, eps 0.01
    assert all(torch.equal(v, weights[k]) for k, v in network.state_dict().items()), "the U-Net is not trained"
    # the same classifier, trained the same way on the same puzzles, as permutation_accuracy trains it
    alone = permutation_accuracy(tiles_of_four_greys(300), tiles_of_four_greys(100, seed=1), epochs=4, batch_size=16)
    assert result["unperturbed"] == pytest.approx(alone)


def test_noise_gives_no_puzzle_away_perturbed_or_not():
    noise = images(400)
    result = permutation_accuracy_against_unet(unet(), noise[:300], noise[300:], eps=0.1, epochs=2)
    assert result["unperturbed"] < 0.15 and result["perturbed"] < 0.15  # chance: 1 / 23, about 0.04
    with pytest.raises(ValueError, match="eps must be >= 0"):
        permutation_accuracy_against_unet(unet(), noise[:30], noise[30:40], eps=-0.1)
