"""Puzzles (Lecture 5): tiles, permutations, inverses, colour removal."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly_edu.puzzles import (
    apply_permutation,
    apply_permutations,
    check_permutation,
    from_tiles,
    invert_permutation,
    puzzle_permutations,
    remove_colour_of_one_tile,
    swap_permutations,
    tile_size,
    to_tiles,
)


def numbered_images(n, c, h, w):
    """Images whose every pixel holds a different value, so that moves are traceable."""
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) / (n * c * h * w)


def test_two_by_two_has_the_23_non_identity_permutations():
    perms = puzzle_permutations(2)
    assert perms.shape == (23, 4)
    as_tuples = {tuple(p.tolist()) for p in perms}
    assert len(as_tuples) == 23 and (0, 1, 2, 3) not in as_tuples
    assert as_tuples == set(itertools.permutations(range(4))) - {(0, 1, 2, 3)}


def test_three_by_three_is_a_fixed_set_of_distinct_non_identity_permutations():
    perms = puzzle_permutations(3)
    assert perms.shape == (23, 9)
    assert len({tuple(p.tolist()) for p in perms}) == 23
    assert not any(p.tolist() == list(range(9)) for p in perms)
    assert torch.equal(perms, puzzle_permutations(3)), "the set must be the same every time"
    for p in perms:
        check_permutation(p, 3)


def test_swaps_move_exactly_two_tiles():
    for grid, count in [(2, 6), (3, 36)]:
        swaps = swap_permutations(grid)
        assert swaps.shape == (count, grid * grid)
        moved = (swaps != torch.arange(grid * grid)).sum(1)
        assert (moved == 2).all()


@settings(max_examples=30, deadline=None)
@given(
    grid=st.sampled_from([2, 3]),
    tile_h=st.integers(1, 5),
    tile_w=st.integers(1, 5),
    channels=st.sampled_from([1, 3]),
    index=st.integers(0, 22),
)
def test_inverting_after_applying_gives_the_input_back(grid, tile_h, tile_w, channels, index):
    x = numbered_images(2, channels, grid * tile_h, grid * tile_w)
    perm = puzzle_permutations(grid)[index]
    puzzled = apply_permutation(x, perm, grid)
    assert not torch.equal(puzzled, x)
    assert torch.equal(apply_permutation(puzzled, invert_permutation(perm), grid), x)


@pytest.mark.parametrize("grid", [2, 3])
def test_every_tile_moves_as_a_block_to_where_the_permutation_says(grid):
    x = numbered_images(3, 2, 6 * grid, 4 * grid)
    th, tw = 6, 4
    for perm in puzzle_permutations(grid):
        puzzled = apply_permutation(x, perm, grid)
        for position, source in enumerate(perm.tolist()):
            r, c = divmod(position, grid)
            sr, sc = divmod(source, grid)
            out_tile = puzzled[:, :, r * th : (r + 1) * th, c * tw : (c + 1) * tw]
            in_tile = x[:, :, sr * th : (sr + 1) * th, sc * tw : (sc + 1) * tw]
            assert torch.equal(out_tile, in_tile)


def test_tiles_round_trip_and_are_numbered_row_by_row():
    x = numbered_images(2, 3, 28, 28)
    tiles = to_tiles(x, 2)
    assert tiles.shape == (2, 4, 3, 14, 14)
    assert torch.equal(tiles[:, 1], x[:, :, :14, 14:])  # tile 1: top right
    assert torch.equal(tiles[:, 2], x[:, :, 14:, :14])  # tile 2: bottom left
    assert torch.equal(from_tiles(tiles, 2), x)


def test_all_permutations_at_once_equal_one_at_a_time():
    x = numbered_images(4, 1, 28, 28)
    perms = puzzle_permutations(2)
    batched = apply_permutations(x, perms, 2)
    assert batched.shape == (4, 23, 1, 28, 28)
    for k, perm in enumerate(perms):
        assert torch.equal(batched[:, k], apply_permutation(x, perm, 2))


def test_a_grid_that_does_not_divide_the_image_is_a_clear_error():
    with pytest.raises(ValueError, match="3x3 grid does not divide 28x28"):
        apply_permutation(torch.rand(1, 1, 28, 28), puzzle_permutations(3)[0], 3)
    with pytest.raises(ValueError, match="does not divide 28x30"):
        tile_size((1, 28, 30), 4)
    with pytest.raises(ValueError, match="grid must be an integer of at least 2"):
        tile_size((1, 28, 28), 1)


def test_a_wrong_permutation_is_a_clear_error():
    with pytest.raises(ValueError, match="not a permutation"):
        check_permutation(torch.tensor([0, 0, 1, 2]), 2)
    with pytest.raises(ValueError, match="has 4 entries"):
        check_permutation(torch.tensor([0, 1, 2]), 2)


def test_colour_removal_greys_one_colour_tile_and_zeroes_one_grey_tile():
    torch.manual_seed(0)
    colour = torch.rand(5, 3, 8, 8)
    out = remove_colour_of_one_tile(colour, 2)
    changed = [k for k in range(4) if not torch.equal(to_tiles(out, 2)[:, k], to_tiles(colour, 2)[:, k])]
    assert len(changed) == 1, "exactly one tile loses its colour, the same for the whole batch"
    tile, original = to_tiles(out, 2)[:, changed[0]], to_tiles(colour, 2)[:, changed[0]]
    assert torch.allclose(tile, original.mean(1, keepdim=True).expand_as(tile))

    grey = torch.rand(5, 1, 8, 8) + 0.01
    out = remove_colour_of_one_tile(grey.clamp(max=1), 2)
    zeroed = [k for k in range(4) if bool((to_tiles(out, 2)[:, k] == 0).all())]
    assert len(zeroed) == 1


def test_colour_removal_does_not_change_its_input():
    x = torch.rand(2, 3, 8, 8)
    before = x.clone()
    remove_colour_of_one_tile(x, 2)
    assert torch.equal(x, before)
