"""Puzzle-AE's networks: the U-Net that solves the puzzles and CPAE-G's
discriminator, as the authors' code builds them
(Niousha12/Puzzle_Anomaly_Detection at e08befb, ``models/Unet.py`` and
``models/Discriminator.py``). Introduced in Lecture 5.

``NETWORKS`` names two builds of each: ``"published"``, the code's (the
default and the full profile's), and ``"course"``, the networks the course
used before it followed the code exactly (release 0.1.0: a U-Net whose up
blocks narrow at their first convolution and interpolate straight to the skip
connection's size; a 3-layer discriminator of width 32 with a linear head and
PyTorch's default initialisation). The stored quick Puzzle-AE and the quick
profile's stored results were made with ``"course"``, so the quick profile
keeps it until its budget is chosen again for the published networks.
"""

from __future__ import annotations

__lecture__ = 5

import torch
import torch.nn.functional as F

NETWORKS = ("published", "course")


def double_conv(channels_in: int, channels_out: int, channels_mid: int | None = None) -> torch.nn.Sequential:
    """Two 3x3 convolutions with ReLU (padding keeps the size), ``channels_in`` ->
    ``channels_mid`` -> ``channels_out`` (``channels_mid`` defaults to
    ``channels_out``): one U-Net block, as the Puzzle-AE code's ``DoubleConv``. Lecture 5."""
    channels_mid = channels_mid or channels_out
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels_in, channels_mid, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(channels_mid, channels_out, 3, padding=1),
        torch.nn.ReLU(),
    )


def upsample_to(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``x`` upsampled x2 (bilinear, ``align_corners=True``), then zero-padded to
    the size of the skip connection ``skip``, half on each side (an odd pixel on
    the right or bottom): the Puzzle-AE code's ``Up`` before its block.
    At 28x28 the maps go 1 -> 2 (padded to 3) -> 6 (to 7) -> 14 -> 28. Lecture 5."""
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
    return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


class UNet(torch.nn.Module):
    """The U-Net of the Puzzle-AE code (``models/Unet.py``, bilinear). Lecture 5.

    Down: a :func:`double_conv` block per entry of ``widths`` (the published
    64-128-256-512-512), with 2x max-pooling between blocks. Up, from the
    bottom: :func:`upsample_to` the matching down block's size, concatenation
    [skip, upsampled] (the skip connection) and a :func:`double_conv` whose
    first convolution halves the concatenated width and whose second gives the
    width of the next block up (64 at the top). A 1x1 convolution gives the
    image, with no output activation and no batch norm anywhere. At the
    published widths it has 17,257,409 weights on one channel, as theirs.

    ``build="course"`` makes the course's earlier U-Net instead (see the
    module's docstring): each up block's first convolution goes straight to
    the block's output width, after a bilinear interpolation to the skip's size.

    ``channels_last`` runs the convolutions in the channels-last memory layout
    (the same numbers within float rounding; faster on CPUs, see
    ``benchmarks/speed.py``); input and output keep the usual layout.
    """

    def __init__(
        self,
        channels: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        channels_last: bool = True,
        build: str = "published",
    ):
        super().__init__()
        widths = tuple(widths)
        if len(widths) < 2:
            raise ValueError(f"a U-Net needs at least two widths, got {widths}")
        check_build(build)
        self.widths, self.channels_last, self.build = widths, channels_last, build
        self.down = torch.nn.ModuleList(
            double_conv(w_in, w_out) for w_in, w_out in zip((channels, *widths[:-1]), widths)
        )
        up, below = [], widths[-1]
        for level in reversed(range(len(widths) - 1)):
            concatenated, out = widths[level] + below, widths[max(level - 1, 0)]
            up.append(double_conv(concatenated, out, channels_mid=concatenated // 2 if build == "published" else out))
            below = out
        self.up = torch.nn.ModuleList(up)
        self.out = torch.nn.Conv2d(below, channels, 1)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for k, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if k else x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            if self.build == "published":
                x = upsample_to(x, skip)
            else:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, x], dim=1))
        return self.out(x).contiguous()


def init_dcgan_weights(module: torch.nn.Module) -> None:
    """DCGAN's initialisation, as the Puzzle-AE code's discriminator has it:
    convolution weights N(0, 0.02); batch-norm scales N(1, 0.02), shifts 0. Lecture 5."""
    if isinstance(module, torch.nn.Conv2d):
        torch.nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, torch.nn.BatchNorm2d):
        torch.nn.init.normal_(module.weight, 1.0, 0.02)
        torch.nn.init.zeros_(module.bias)


class Discriminator(torch.nn.Module):
    """CPAE-G's discriminator: the Puzzle-AE code's ``NetD`` (GANomaly's DCGAN
    encoder, ``models/Discriminator.py`` at e08befb). Lecture 5.

    A 4x4 convolution of stride 2 (no bias) and LeakyReLU 0.2; then 4x4
    stride-2 convolutions with batch norm and LeakyReLU, doubling the width
    (from ``width``, 64 in the code), while the map is larger than 4x4 (at
    28 px: 64-128-256 channels on 14-7-3 maps); a last convolution over the
    whole remaining map (3x3 at 28 px, 4x4 at 32, 64 or 128 px, as the code's) to one value, and a
    sigmoid. ``forward`` returns the probability that an image is real and the
    features before the last convolution (for the feature-matching loss).
    Weights start as DCGAN's (:func:`init_dcgan_weights`).
    """

    def __init__(self, channels: int = 1, size: int = 28, width: int = 64):
        super().__init__()
        layers = [torch.nn.Conv2d(channels, width, 4, stride=2, padding=1, bias=False), torch.nn.LeakyReLU(0.2)]
        map_size = size // 2
        while map_size > 4:  # each layer halves the map: at 28 px, 14 -> 7 -> 3
            layers += [
                torch.nn.Conv2d(width, width * 2, 4, stride=2, padding=1, bias=False),
                torch.nn.BatchNorm2d(width * 2),
                torch.nn.LeakyReLU(0.2),
            ]
            width, map_size = width * 2, map_size // 2
        if map_size < 1:
            raise ValueError(f"images of {size} px are too small for the discriminator: it needs at least 2 px")
        self.features = torch.nn.Sequential(*layers)
        self.classify = torch.nn.Conv2d(width, 1, map_size, bias=False)  # the whole map to one value
        self.apply(init_dcgan_weights)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return torch.sigmoid(self.classify(features)).flatten(), features


class CourseDiscriminator(torch.nn.Module):
    """The course's earlier discriminator (``build="course"``, see the module's
    docstring): ``layers`` 4x4 stride-2 convolutions from ``width`` channels,
    doubling (batch norm after all but the first, LeakyReLU 0.2), then a linear
    layer and a sigmoid; PyTorch's default initialisation. ``forward`` as
    :class:`Discriminator`'s, the features flattened. Lecture 5."""

    def __init__(self, channels: int = 1, size: int = 28, width: int = 32, layers: int = 3):
        super().__init__()
        blocks, c_in = [], channels
        for k in range(layers):
            blocks.append(torch.nn.Conv2d(c_in, width * 2**k, 4, stride=2, padding=1, bias=False))
            if k:
                blocks.append(torch.nn.BatchNorm2d(width * 2**k))
            blocks.append(torch.nn.LeakyReLU(0.2))
            c_in, size = width * 2**k, size // 2
        self.features = torch.nn.Sequential(*blocks, torch.nn.Flatten())
        self.classify = torch.nn.Linear(c_in * size * size, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return torch.sigmoid(self.classify(features)).squeeze(1), features


def check_build(build: str) -> str:
    """``build`` if it is one of :data:`NETWORKS`, else a ValueError. Lecture 5."""
    if build not in NETWORKS:
        raise ValueError(f"unknown networks {build!r}; choose 'published' (the Puzzle-AE code's) or 'course'")
    return build


def make_discriminator(channels: int, size: int, build: str = "published") -> torch.nn.Module:
    """CPAE-G's discriminator for images of ``channels`` x ``size`` x ``size``:
    the code's :class:`Discriminator`, or the :class:`CourseDiscriminator`. Lecture 5."""
    if check_build(build) == "published":
        return Discriminator(channels=channels, size=size)
    return CourseDiscriminator(channels=channels, size=size)


class PuzzleGAN(torch.nn.Module):
    """A U-Net with its discriminator, trained together (CPAE-G). Calling it
    runs the U-Net; the training loop saves both in one checkpoint. Lecture 5."""

    def __init__(self, unet: UNet, discriminator: Discriminator):
        super().__init__()
        self.unet, self.discriminator = unet, discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)
