"""Models: plain ``torch.nn.Module``s used across the course.

Where each network of the course lives (module and class), in lecture order. The
first four are here because several lectures use them; the others live beside the
one method that needs them.

- ``models.MLPAutoencoder``: the talk's autoencoder (Lecture 1; ARAE's in Lecture 4)
- ``models.ConvAutoencoder``: a small convolutional autoencoder (Lecture 1; the
  per-pixel AEs of ``anomaly_maps`` in Lecture 6)
- ``models.DeepSVDDNet``: the bias-free network of Deep SVDD (Lecture 1)
- ``models.MnistCNN``: a small classifier for adversarial examples (Lectures 2 and 3)
- ``arae.EncoderOnly``: an autoencoder's encoder as a model of its own, what the
  latent attack attacks (Lecture 4)
- ``shortcut.PermutationClassifier``: which puzzle an image shows, and
  ``shortcut.KeepSeams``, which shows it only the seams (Lecture 5)
- ``puzzle_networks.UNet``: Puzzle-AE's network; ``puzzle_networks.Discriminator``
  (and the course's earlier ``CourseDiscriminator``): CPAE-G's discriminator;
  ``puzzle_networks.PuzzleGAN``: the two, trained together (Lecture 5)
- ``geometric.TransformClassifier``: which of the 8 symmetries was applied (GT, Lecture 6)
- ``experiments.batched.StackedAutoencoders``: several ``MLPAutoencoder`` s trained as
  one model (the experiment harness's speed-up, no concept of its own)

Each detector builds its network in ``new_model``.
"""

from __future__ import annotations

__lecture__ = 1

import math

import torch
from torch import nn


class MLPAutoencoder(nn.Module):
    """The talk's autoencoder: flattened pixels, encoder 784-512-256-128, decoder
    128-256-512-784, a sigmoid after every layer, Glorot-normal weights.

    ``encoder`` and ``decoder`` are separate attributes so that later lectures can
    attack the latent code. ``forward`` keeps the input's shape.
    ``activation="relu"`` gives the network of ARAE's union variant (Lecture 4):
    ReLU after every layer but the last, whose output is linear. Lecture 1.
    """

    def __init__(self, image_shape=(1, 28, 28), hidden=(512, 256, 128), activation: str = "sigmoid"):
        super().__init__()
        if activation not in ("sigmoid", "relu"):
            raise ValueError(f"activation must be 'sigmoid' or 'relu', got {activation!r}")
        self.image_shape, self.activation = tuple(image_shape), activation
        sizes = [math.prod(self.image_shape), *hidden]
        self.encoder = _mlp(sizes, activation)
        self.decoder = _mlp(sizes[::-1], activation, linear_output=activation == "relu")
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _mlp(sizes, activation: str, linear_output: bool = False) -> nn.Sequential:
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Sigmoid() if activation == "sigmoid" else nn.ReLU()]
    return nn.Sequential(*(layers[:-1] if linear_output else layers))


class ConvAutoencoder(nn.Module):
    """A small convolutional autoencoder: one stride-2 convolution per entry of
    ``widths`` (each halves the image), a dense ``latent_dim`` code, and the same
    steps back up with transposed convolutions; sigmoid output. The default
    (two steps) suits 28x28 and 32x32 images (Lecture 1); Lecture 6 uses more
    steps for 64x64 and 128x128 images."""

    def __init__(self, channels: int = 1, size: int = 28, latent_dim: int = 32, widths: tuple[int, ...] = (32, 64)):
        super().__init__()
        step = 2 ** len(widths)
        if size % step:
            raise ValueError(f"size must be a multiple of {step} for {len(widths)} halvings, got {size}")
        self.channels, self.size = channels, size
        feat, last = size // step, widths[-1]
        down, up = [], []
        for n_in, n_out in zip((channels, *widths[:-1]), widths):
            down += [nn.Conv2d(n_in, n_out, 3, stride=2, padding=1), nn.ReLU()]
        for n_in, n_out in zip(widths[::-1], (*widths[-2::-1], channels)):
            up += [nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(last * feat * feat, latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, last * feat * feat), nn.ReLU(), nn.Unflatten(1, (last, feat, feat)), *up[:-1]
        )
        self.decoder.append(nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class DeepSVDDNet(nn.Module):
    """Deep SVDD's network for 28x28 grey images (Ruff et al. 2018): no bias
    terms anywhere and batch norm without affine parameters, so that the network
    cannot map everything to the centre by a constant. Output: a 32-d code. Lecture 1."""

    image_shape = (1, 28, 28)  # the only input it takes

    def __init__(self, rep_dim: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5, padding=2, bias=False),
            nn.BatchNorm2d(8, affine=False),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 4, 5, padding=2, bias=False),
            nn.BatchNorm2d(4, affine=False),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(4 * 7 * 7, rep_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class MnistCNN(nn.Module):
    """A small MNIST classifier: two conv layers and two dense layers, returning
    logits. ``width`` multiplies the number of channels and units (1: 16-32
    channels and 100 units; Madry et al.'s MNIST network is about width 2 to 10).
    Inputs are pixels in [0, 1]; any normalisation belongs inside the model so
    that attacks work in pixel space. Lectures 2 and 3."""

    def __init__(self, num_classes: int = 10, width: int = 1):
        super().__init__()
        c1, c2, hidden = 16 * width, 32 * width, 100 * width
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
