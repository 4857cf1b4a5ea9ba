"""Checks of Exercise 4 (Lecture 4): ARAE's latent objective, the attack on
the latent code, ARAE's loss, and the occlusion map."""

from __future__ import annotations

__lecture__ = 4

import functools

import numpy as np
import torch

from ..training import seeded
from .cases import RAISE_SCORE_MISTAKES, AttackCase, TinyAE, check_signed_attack, raise_score_answer
from .machinery import call_refusing_the_package, passed


class _TinyAutoencoder(torch.nn.Module):
    """4 pixels -> 3-d code -> 4 pixels, with an ``encode`` and a ``decode``."""

    def __init__(self):
        super().__init__()
        with seeded(0):
            self.enc, self.dec = torch.nn.Linear(4, 3), torch.nn.Linear(3, 4)

    def encode(self, x):
        return torch.sigmoid(self.enc(x.flatten(1)))

    def decode(self, z):
        return torch.sigmoid(self.dec(z)).view(-1, 1, 2, 2)

    def forward(self, x):
        return self.decode(self.encode(x))


def _tiny_images():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 1, 2, 2, generator=g)
    return x, (x + 0.1 * torch.randn(5, 1, 2, 2, generator=g)).clamp(0, 1)


def check_latent_objective(latent_objective) -> None:
    """Exercise 4.1: ``latent_objective(codes, clean_codes)`` returns, per
    example, the mean over latent units of (codes - clean_codes)^2; it is the
    ``loss_fn`` that the latent attack maximises. The sum (the talk's squared
    norm) passes too, with a note: it gives the attack the same direction."""
    task = "Exercise 4.1 (the latent attack's objective)"
    model = _TinyAutoencoder()
    x, x_adv = _tiny_images()
    with torch.no_grad():
        clean_codes = model.encode(x)
    codes = model.encode(x_adv)
    got = call_refusing_the_package(task, latent_objective, codes, clean_codes)
    expected = ((codes - clean_codes) ** 2).mean(1)
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{task}: return a torch tensor (the attack differentiates it), got {type(got).__name__}")
    if got.ndim == 0:
        raise AssertionError(
            f"{task}: you returned one number for the batch; return one value per example, "
            f"shape ({len(x)},) (average over the latent units only)"
        )
    if got.shape != expected.shape:
        raise AssertionError(f"{task}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if got.grad_fn is None:
        raise AssertionError(
            f"{task}: your result carries no gradient; the attack needs to differentiate it (no .detach(), no numpy)"
        )
    if torch.allclose(got, expected * codes.shape[1], atol=1e-6):
        # the talk's own formula (a squared norm): k times the mean, so the same signed-gradient
        # attack. Only in the training loss (Task 2) does the choice change what gamma means
        passed(
            task,
            "You summed over the latent units (the talk's squared norm); the attack's signed gradient is "
            "the same as with the mean. In the ARAE loss of Task 2 the choice matters: take means there.",
        )
        return
    if not torch.allclose(got, expected, atol=1e-6):
        raise AssertionError(
            f"{task}: expected {expected.detach().numpy().round(5)}, got {got.detach().numpy().round(5)}"
        )
    passed(task)


def _latent_attack_cases() -> list[tuple]:
    """(description, model, x, start, eps, alpha, steps) of Exercise 4.1b's check."""
    model = _TinyAutoencoder()
    x, _ = _tiny_images()
    x[0, 0, 0, 0], x[1, 0, 1, 1] = 0.0, 1.0  # pixels at the ends of [0, 1]
    cases = []
    for number, (eps, alpha, steps) in enumerate([(0.2, 0.05, 5), (0.1, 0.15, 3), (0.3, 0.1, 1)]):
        start = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(40 + number))
        cases.append((f"eps {eps}, alpha {alpha}, {steps} step(s)", model, x, start, eps, alpha, steps))
    return cases


def _mean_code_distance(model, clean_codes):
    """The latent objective as a score of the attacked images: mean over latent units."""
    return lambda x_adv: ((model.encode(x_adv) - clean_codes) ** 2).mean(1)


def check_latent_attack(latent_attack) -> None:
    """Exercise 4.1b: ``latent_attack(model, x, start, eps, alpha, steps,
    objective)`` starts at x + start (clamped to [0, 1]) and takes ``steps``
    steps x_adv + alpha * sign(grad of objective(model.encode(x_adv), z).sum()),
    z = model.encode(x) held fixed, each projected onto the L-inf ball of
    radius eps around x and clamped to [0, 1]; it returns new images and leaves
    x alone."""
    task = "Exercise 4.1b (the latent attack)"
    objective = lambda codes, clean_codes: ((codes - clean_codes) ** 2).mean(1)  # noqa: E731
    mistakes = {
        "stuck at start": (
            "your attack never moved from its start. Push the code away from the CLEAN code z = model.encode(x), "
            "computed once before the loop: the distance of a code to itself is always zero, and so is its gradient"
        )
    }
    mistakes |= {m: text.replace("step_size", "alpha") for m, text in RAISE_SCORE_MISTAKES.items()}
    mistakes["descent"] = (
        "your attack pulls the code TOWARDS the clean code (x_adv - alpha * sign(grad)); the attack looks for the "
        "perturbation that moves the code the most: ADD alpha * sign(grad)"
    )
    mistakes["no start"] = (
        "you start at x itself; there the distance to the clean code is at its minimum and its gradient is exactly "
        "zero, so the attack never moves. Start at x + start, clamped to [0, 1]"
    )
    cases = []
    for description, model, x, start, eps, alpha, steps in _latent_attack_cases():
        with torch.no_grad():
            clean_codes = model.encode(x)
        score = _mean_code_distance(model, clean_codes)
        cases.append(
            AttackCase(
                description,
                x,
                eps,
                lambda x_in, m=model, st=start, e=eps, a=alpha, n=steps: (m, x_in, st.clone(), e, a, n, objective),
                lambda mistake, f=score, x=x, e=eps, n=steps, a=alpha, st=start: raise_score_answer(
                    f, x, e, n, a, mistake, start=st
                ),
            )
        )
    recipe = (
        "Hold z = model.encode(x) fixed; start at (x + start).clamp(0, 1); in each step take the gradient of "
        "objective(model.encode(x_adv), z).sum() with respect to x_adv, add alpha * its sign, clamp to "
        "[x - eps, x + eps], then to [0, 1]"
    )
    attack = functools.partial(call_refusing_the_package, task, latent_attack)
    check_signed_attack(task, attack, cases, mistakes, recipe, 400)


def check_arae_loss(arae_batch_loss) -> None:
    """Exercise 4.2: ``arae_batch_loss(model, x, x_adv, gamma)`` =
    mean((Dec(Enc(x_adv)) - x)^2) + gamma * mean((Enc(x_adv) - Enc(x))^2), with
    gradients through both encoder branches."""
    task = "Exercise 4.2 (the ARAE loss)"
    model = _TinyAutoencoder()
    x, x_adv = _tiny_images()
    gamma = 0.5
    got = call_refusing_the_package(task, arae_batch_loss, model, x, x_adv, gamma)
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        raise AssertionError(f"{task}: return one scalar tensor, got {got!r}")
    code, code_adv = model.encode(x), model.encode(x_adv)
    rec = ((model.decode(code_adv) - x) ** 2).mean()
    latent = ((code_adv - code) ** 2).mean()
    expected = rec + gamma * latent
    if torch.isclose(
        got, ((model.decode(code_adv) - x_adv) ** 2).mean() + gamma * latent, atol=1e-7
    ) and not torch.isclose(got, expected, atol=1e-7):
        raise AssertionError(f"{task}: you reconstruct towards x_adv; the target is the CLEAN image x")
    if torch.isclose(got, rec, atol=1e-7):
        raise AssertionError(f"{task}: your loss is the reconstruction term alone; add gamma times the latent term")
    per_image_sums = ((model.decode(code_adv) - x) ** 2).flatten(1).sum(1) + gamma * ((code_adv - code) ** 2).sum(1)
    if any(torch.isclose(got, total, atol=1e-6) for total in (per_image_sums.mean(), per_image_sums.sum())):
        raise AssertionError(
            f"{task}: you sum the squared errors; take their means over pixels and latent units, as the "
            f"published code does (with sums the same gamma weighs the latent term d/k times less, Lecture 4)"
        )
    if torch.isclose(got, ((model(x) - x) ** 2).mean() + gamma * latent, atol=1e-7):
        raise AssertionError(
            f"{task}: you reconstruct the clean input; ARAE reconstructs x from Enc(x_adv), the attacked image's code"
        )
    if not torch.isclose(got, expected, atol=1e-6):
        raise AssertionError(f"{task}: expected {expected.item():.6f}, got {got.item():.6f}")
    (grad_got,) = torch.autograd.grad(got, model.enc.weight, allow_unused=True)
    (grad_expected,) = torch.autograd.grad(expected, model.enc.weight)
    if grad_got is None or not torch.allclose(grad_got, grad_expected, atol=1e-6):
        raise AssertionError(
            f"{task}: the value is right but the gradients are not: do not detach "
            f"Enc(x); gradients flow through both encoder branches"
        )
    passed(task)


def _occlusion_answer(score, image: torch.Tensor, patch: int, fill: float, mistake: str | None = None) -> np.ndarray:
    """Exercise 4.3's answer with plain loops, or the answer with one ``mistake``
    (a key of :data:`_OCCLUSION_MISTAKES`)."""
    channels, height, width = image.shape
    size = 1 if mistake == "one pixel" else patch
    value = 0.0 if mistake == "fill ignored" else fill
    shift = patch // 2 if mistake == "centred" else 0
    covered_channels = {"first channel": [0], "last channel": [channels - 1]}.get(mistake, list(range(channels)))
    base = float(np.asarray(score(image[None]))[0])
    result = np.zeros((height, width))
    for r in range(height):
        for c in range(width):
            covered = image.clone()
            if mistake == "no channel axis":  # the image indexed as if it were (H, W)
                covered[r : r + size, c : c + size] = value
            else:
                for dr in range(size):
                    for dc in range(size):
                        row, col = r + dr - shift, c + dc - shift
                        if mistake == "wrap":
                            row, col = row % height, col % width
                        if 0 <= row < height and 0 <= col < width:
                            covered[covered_channels, row, col] = value
            result[r, c] = float(np.asarray(score(covered[None]))[0]) - base
    return -result if mistake == "sign" else result


_ONE_CHANNEL = (
    "you cover the square in one channel only; cover it in every channel: covered[:, r : r + patch, c : c + patch] "
    "= fill (with MNIST's one channel the two agree, with a colour image they do not)"
)

_OCCLUSION_MISTAKES = {
    "sign": (
        "your map has the opposite sign: it holds score(image) - score(covered). The course's map is "
        "score(covered) - score(image): positive (red) where covering the pixels RAISES the anomaly score"
    ),
    "centred": (
        "your square is centred on each pixel; the map's entry (r, c) covers the patch x patch square whose "
        "TOP-LEFT corner is (r, c), cut off at the image's right and bottom borders"
    ),
    "wrap": (
        "your square wraps round the image's border (torch.roll or indices modulo the size); cut it off at the "
        "border instead: near the right and bottom edges fewer pixels are covered"
    ),
    "fill ignored": "you cover the pixels with 0 whatever `fill` is; set them to `fill`",
    "one pixel": "you cover one pixel at a time whatever `patch` is; cover a patch x patch square",
    "first channel": _ONE_CHANNEL,
    "last channel": _ONE_CHANNEL,
    "no channel axis": (
        "you index the image as if it were (H, W): image[r : r + patch, c : c + patch] picks channels and rows. "
        "The image is (C, H, W): cover covered[:, r : r + patch, c : c + patch]"
    ),
}


def _occlusion_cases() -> list[tuple[str, object, torch.Tensor, int, float]]:
    """(description, score, image, patch, fill): a linear score, whose map can
    be worked out by hand, and a small autoencoder's reconstruction error."""
    g = torch.Generator().manual_seed(43)
    weight = torch.randn(1, 1, 5, 7, generator=g)

    def linear_score(x):
        return (weight * x).flatten(1).sum(1).numpy()

    def reconstruction_score(autoencoder):  # plain torch: the student's function calls it, and may not call the package
        def score(x):
            with torch.no_grad():
                return ((autoencoder(x) - x) ** 2).flatten(1).sum(1).numpy()

        return score

    image = torch.rand(1, 5, 7, generator=g)
    square = torch.rand(1, 4, 4, generator=g)
    colour = torch.rand(3, 4, 4, generator=g)  # three channels: a square covered in one channel only is caught
    return [
        ("a weighted sum of the pixels, a 5 x 7 image, patch 1, fill 0", linear_score, image, 1, 0.0),
        ("a weighted sum of the pixels, a 5 x 7 image, patch 3, fill 0.5", linear_score, image, 3, 0.5),
        ("a small autoencoder's error, a 4 x 4 image, patch 2, fill 0", reconstruction_score(TinyAE()), square, 2, 0.0),
        (
            "a small autoencoder's error, a 3-channel 4 x 4 image, patch 2, fill 0.5",
            reconstruction_score(TinyAE(channels=3)),
            colour,
            2,
            0.5,
        ),
    ]


def check_occlusion_map(occlusion_map) -> None:
    """Exercise 4.3: ``occlusion_map(score, image, patch, fill)`` returns an
    (H, W) array whose entry (r, c) is score(covered) - score(image), with the
    patch x patch square whose top-left corner is (r, c), cut at the border,
    set to ``fill``."""
    task = "Exercise 4.3 (occlusion saliency)"
    outputs = []
    for description, score, image, patch, fill in _occlusion_cases():
        image_in = image.clone()
        got = call_refusing_the_package(task, occlusion_map, score, image_in, patch, fill)
        if not torch.equal(image_in, image):
            raise AssertionError(f"{task}: your function changed the image in place; cover pixels of a copy")
        got = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got, dtype=float)
        if got.shape != tuple(image.shape[1:]):
            hint = " (rows first: (H, W), not (W, H))" if got.shape == tuple(image.shape[1:])[::-1] else ""
            raise AssertionError(
                f"{task}: for {description}: expected a map of shape {tuple(image.shape[1:])}, one value per "
                f"pixel, got {got.shape}{hint}"
            )
        outputs.append((got, (score, image, patch, fill)))

    def matches(mistake) -> bool:
        return all(np.allclose(got, _occlusion_answer(*case, mistake=mistake), atol=1e-5) for got, case in outputs)

    if matches(None):
        passed(task)
        return
    mistake = next((m for m in _OCCLUSION_MISTAKES if matches(m)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {_OCCLUSION_MISTAKES[mistake]}")
    for (got, case), (description, *_) in zip(outputs, _occlusion_cases()):
        expected = _occlusion_answer(*case)
        if not np.allclose(got, expected, atol=1e-5):
            raise AssertionError(
                f"{task}: for {description}: {int((~np.isclose(got, expected, atol=1e-5)).sum())} of "
                f"{got.size} entries differ from the expected map (by up to {np.abs(got - expected).max():.4f}). "
                f"Entry (r, c) is score(covered) - score(image), the square starting at (r, c) set to fill"
            )
