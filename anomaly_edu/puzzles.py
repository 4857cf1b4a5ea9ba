"""Puzzles: cut images into a grid of tiles, shuffle the tiles, put them back.
Introduced in Lecture 5 (Puzzle-AE).

A **permutation** of a ``grid`` x ``grid`` puzzle is a tensor ``perm`` of the
tile indices 0 .. grid*grid - 1 (tiles numbered row by row). Applying it puts
tile ``perm[i]`` of the input at position ``i`` of the output; the inverse
permutation (:func:`invert_permutation`) puts every tile back.

- 2x2 puzzles use all 23 non-identity permutations of the 4 tiles (the talk's
  setting); 3x3 puzzles use a fixed, seeded set of 23 of the 362,879
  non-identity ones (:func:`puzzle_permutations` says why);
- textures (where any tile looks like any other) use the swaps of two tiles.

Colorization and inpainting (CPAE, :func:`remove_colour_of_one_tile`) hide one
tile's colour or content, so that the network must restore it.
"""

from __future__ import annotations

__lecture__ = 5

import itertools

import torch

THREE_BY_THREE_SEED = 0  # the seed of the fixed set of 3x3 permutations
THREE_BY_THREE_COUNT = 23  # as many as the 2x2 puzzle has, so that scoring costs the same


def tile_size(image_shape: tuple, grid: int) -> tuple[int, int]:
    """The (height, width) of one tile of a ``grid`` x ``grid`` puzzle of images
    of shape (C, H, W); a clear error when the grid does not divide the image
    (never a silent crop). Lecture 5."""
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid must be an integer of at least 2 (2 for 2x2 tiles, 3 for 3x3), got {grid!r}")
    height, width = image_shape[-2:]
    if height % grid or width % grid:
        raise ValueError(
            f"a {grid}x{grid} grid does not divide {height}x{width} images into equal tiles; "
            f"resize or crop the images to a multiple of {grid} first (e.g. 28x28 takes 2x2 but not 3x3; "
            f"27x27 or 30x30 take 3x3)"
        )
    return height // grid, width // grid


def check_permutation(perm: torch.Tensor, grid: int) -> torch.Tensor:
    """Raise a clear error unless ``perm`` (or each row of a batch of them) is a
    permutation of 0 .. grid*grid - 1; return it as int64. Lecture 5."""
    perm = torch.as_tensor(perm, dtype=torch.long)
    n_tiles = grid * grid
    rows = perm.reshape(-1, perm.shape[-1]) if perm.ndim else perm.reshape(1, 1)
    if perm.ndim not in (1, 2) or perm.shape[-1] != n_tiles:
        raise ValueError(
            f"a permutation of a {grid}x{grid} puzzle has {n_tiles} entries, got shape {tuple(perm.shape)}"
        )
    if not bool((rows.sort(dim=1).values == torch.arange(n_tiles)).all()):
        raise ValueError(f"not a permutation of the tiles 0..{n_tiles - 1}: {rows.tolist()}")
    return perm


def to_tiles(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Cut images (N, C, H, W) into tiles (N, grid*grid, C, H/grid, W/grid),
    numbered row by row. Lecture 5."""
    n, c = x.shape[:2]
    th, tw = tile_size(tuple(x.shape), grid)
    tiles = x.reshape(n, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5)
    return tiles.reshape(n, grid * grid, c, th, tw)


def from_tiles(tiles: torch.Tensor, grid: int) -> torch.Tensor:
    """Put tiles (N, grid*grid, C, h, w) back together into images
    (N, C, grid*h, grid*w): the inverse of :func:`to_tiles`. Lecture 5."""
    n, _, c, th, tw = tiles.shape
    images = tiles.reshape(n, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5)
    return images.reshape(n, c, grid * th, grid * tw)


def apply_permutation(x: torch.Tensor, perm: torch.Tensor, grid: int) -> torch.Tensor:
    """Shuffle the tiles of every image of ``x`` (N, C, H, W) by ``perm``: tile
    ``perm[i]`` goes to position ``i``. Lecture 5."""
    perm = check_permutation(perm, grid).to(x.device)
    if perm.ndim != 1:
        raise ValueError("apply_permutation takes one permutation; use apply_permutations for several")
    return from_tiles(to_tiles(x, grid)[:, perm], grid)


def apply_permutations(x: torch.Tensor, perms: torch.Tensor, grid: int) -> torch.Tensor:
    """Every image of ``x`` (N, C, H, W) under every permutation of ``perms``
    (P, grid*grid) at once, without a Python loop: shape (N, P, C, H, W). Lecture 5."""
    perms = check_permutation(perms, grid).to(x.device).reshape(-1, grid * grid)
    tiles = to_tiles(x, grid)  # (N, T, C, h, w)
    n, p = len(x), len(perms)
    shuffled = tiles[:, perms]  # (N, P, T, C, h, w)
    return from_tiles(shuffled.reshape(n * p, *tiles.shape[1:]), grid).reshape(n, p, *x.shape[1:])


def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """The permutation that undoes ``perm`` (its argsort). Lecture 5."""
    perm = torch.as_tensor(perm, dtype=torch.long)
    return torch.argsort(perm, dim=-1)


def puzzle_permutations(grid: int) -> torch.Tensor:
    """The non-identity permutations a ``grid`` x ``grid`` puzzle uses, one per
    row. Lecture 5.

    - 2x2: all 23 of them (4! - 1), in lexicographic order.
    - 3x3: there are 362,879, far too many to score an image under each; the
      course uses a fixed set of 23 distinct ones drawn with a seeded generator
      (``THREE_BY_THREE_SEED``). 23, because scoring then costs what it costs
      for 2x2, and the same set for training and scoring, so that the network is
      scored only on puzzles it has learned to solve.
    """
    n_tiles = grid * grid
    if grid == 2:
        return torch.tensor(list(itertools.permutations(range(n_tiles)))[1:])
    if grid < 2:
        raise ValueError(f"grid must be at least 2, got {grid}")
    generator = torch.Generator().manual_seed(THREE_BY_THREE_SEED)
    chosen: list[tuple] = []
    while len(chosen) < THREE_BY_THREE_COUNT:
        perm = tuple(torch.randperm(n_tiles, generator=generator).tolist())
        if perm != tuple(range(n_tiles)) and perm not in chosen:
            chosen.append(perm)
    return torch.tensor(chosen)


def swap_permutations(grid: int) -> torch.Tensor:
    """The permutations that swap exactly two tiles (6 for 2x2, 36 for 3x3):
    the puzzles of texture images, whose tiles can look alike. Lecture 5."""
    n_tiles = grid * grid
    swaps = []
    for i, j in itertools.combinations(range(n_tiles), 2):
        perm = list(range(n_tiles))
        perm[i], perm[j] = j, i
        swaps.append(perm)
    return torch.tensor(swaps)


def random_permutation(perms: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One row of ``perms``, drawn uniformly (the training puzzle of one
    mini-batch). Lecture 5."""
    return perms[torch.randint(len(perms), (1,), generator=generator).item()]


def remove_colour_of_one_tile(x: torch.Tensor, grid: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """CPAE's colorization and inpainting task: one random tile (the same for
    the whole batch) loses its colour. In colour images every pixel of that tile
    becomes the tile's mean over the channels (a grey tile the network must
    recolour); in grey images the tile is zeroed (the network must inpaint it).
    Returns a new tensor; ``x`` is not changed. Lecture 5."""
    tiles = to_tiles(x, grid).clone()
    k = torch.randint(grid * grid, (1,), generator=generator).item()
    if x.shape[1] == 1:
        tiles[:, k] = 0.0
    else:
        tiles[:, k] = tiles[:, k].mean(dim=1, keepdim=True).expand_as(tiles[:, k])
    return from_tiles(tiles, grid)
