"""GT (Lecture 6): the 8 transformations of the square, the classifier that
tells them apart, and the detector scored by its confidence."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anomaly_edu import profiles, training
from anomaly_edu.geometric import (
    GEOMETRIC_TRANSFORMS,
    GTDetector,
    TransformClassifier,
    apply_transform,
    fit_dirichlet,
    gt_score,
    inverse_digamma,
    transform_log_softmax,
    transformed_batch,
)

N_TRANSFORMS = len(GEOMETRIC_TRANSFORMS)


def generic_images(n=2, channels=1, size=5, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def l_shapes(n, size=16, seed=0):
    """Normal images: an "L" with unequal arms near the top-left corner (no
    symmetry of the square keeps it), at a random small offset, on faint noise."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, size, size, generator=g)
    offsets = torch.randint(1, 4, (n, 2), generator=g)
    for image, (r, c) in zip(x, offsets.tolist()):
        image[0, r, c : c + 8] = 1.0  # the long horizontal arm
        image[0, r : r + 4, c] = 1.0  # the short vertical arm
    return x


def symmetric_blobs_and_noise(n, size=16, seed=1):
    """Anomalies: centred round blobs (every symmetry of the square keeps them,
    so their orientation cannot be told) and pure noise, half each."""
    g = torch.Generator().manual_seed(seed)
    centre = (size - 1) / 2
    rows = torch.arange(size, dtype=torch.float32) - centre
    d2 = rows[:, None] ** 2 + rows[None, :] ** 2
    widths = 2 + 3 * torch.rand(n // 2, 1, 1, 1, generator=g)
    blobs = torch.exp(-d2 / (2 * widths**2))
    noise = torch.rand(n - n // 2, 1, size, size, generator=g)
    return (0.9 * torch.cat([blobs, noise]) + 0.1 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)


def tiny_detector(**settings):
    options = dict(widths=(4, 8, 8), epochs=3, batch_size=32, progress=False, device="cpu")
    return GTDetector(**{**options, **settings})


# ------------------------------------------------------------------ the transformations


def test_there_are_8_named_transforms_distinct_on_a_generic_image():
    assert len(set(GEOMETRIC_TRANSFORMS)) == N_TRANSFORMS == 8
    x = generic_images()
    images = [apply_transform(x, k) for k in range(N_TRANSFORMS)]
    assert all(image.shape == x.shape for image in images)
    for i in range(N_TRANSFORMS):
        for j in range(i):
            assert not torch.equal(images[i], images[j]), (GEOMETRIC_TRANSFORMS[i], GEOMETRIC_TRANSFORMS[j])


def test_the_transforms_form_a_group():
    x = generic_images()
    images = [apply_transform(x, k) for k in range(N_TRANSFORMS)]

    def index_of(image):
        matches = [k for k, candidate in enumerate(images) if torch.equal(image, candidate)]
        assert len(matches) == 1
        return matches[0]

    for i in range(N_TRANSFORMS):
        composed = [index_of(apply_transform(images[i], j)) for j in range(N_TRANSFORMS)]  # closed
        assert 0 in composed, f"{GEOMETRIC_TRANSFORMS[i]} has no inverse among the transforms"
    flip, rot90 = GEOMETRIC_TRANSFORMS.index("flip"), GEOMETRIC_TRANSFORMS.index("rot90")
    assert torch.equal(apply_transform(apply_transform(x, flip), flip), x)
    y = x
    for _ in range(4):
        y = apply_transform(y, rot90)
    assert torch.equal(y, x)


def test_apply_transform_on_a_hand_computed_case():
    # torch.rot90(x, 1, dims=(2, 3)) turns an image a quarter counter-clockwise
    # (row 0 drawn on top): the top-right pixel 2 goes to the top left.
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    expected = {
        "identity": [[1, 2], [3, 4]],
        "rot90": [[2, 4], [1, 3]],
        "rot180": [[4, 3], [2, 1]],
        "rot270": [[3, 1], [4, 2]],
        "flip": [[2, 1], [4, 3]],
        "flip+rot90": [[1, 3], [2, 4]],  # the flip comes first: a transpose
        "flip+rot180": [[3, 4], [1, 2]],
        "flip+rot270": [[4, 2], [3, 1]],
    }
    for k, name in enumerate(GEOMETRIC_TRANSFORMS):
        assert apply_transform(x, k).view(2, 2).tolist() == expected[name], name


def test_non_square_images_and_bad_indices_are_refused():
    with pytest.raises(ValueError, match="square images, got 4x6.*resize or crop"):
        apply_transform(torch.rand(2, 1, 4, 6), 1)
    with pytest.raises(ValueError, match="square"):
        GTDetector(progress=False, device="cpu").fit(torch.rand(4, 1, 8, 12))
    with pytest.raises(ValueError, match="transform index must be in 0..7, got 8"):
        apply_transform(torch.rand(2, 1, 4, 4), 8)


def test_transformed_batch_holds_every_image_under_every_transform():
    x = generic_images(n=3, channels=2)
    x_all, labels = transformed_batch(x)
    assert x_all.shape == (8 * 3, 2, 5, 5) and labels.shape == (8 * 3,) and labels.dtype == torch.long
    assert labels.tolist() == [k for k in range(8) for _ in range(3)]
    for k in range(8):
        assert torch.equal(x_all[labels == k], apply_transform(x, k))


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_classifier_gives_8_logits_at_every_size(size, channels):
    model = TransformClassifier(channels=channels, widths=(4, 8, 8))
    assert model(torch.rand(2, channels, size, size)).shape == (2, 8)


def test_the_classifier_refuses_images_too_small_for_its_poolings():
    with pytest.raises(ValueError, match="at least 8x8"):
        TransformClassifier(widths=(4, 8, 8))(torch.rand(2, 1, 4, 4))


# ------------------------------------------------------------------ the detector


@pytest.fixture(scope="module")
def fitted():
    normal = l_shapes(96)
    return GTDetector(widths=(8, 16, 32), epochs=6, batch_size=64, progress=False, device="cpu").fit(normal)


def test_gt_scores_symmetric_anomalies_above_oriented_normals(fitted):
    normal, anomalous = l_shapes(40, seed=10), symmetric_blobs_and_noise(40)
    scores_normal, scores_anomalous = fitted.anomaly_score(normal), fitted.anomaly_score(anomalous)
    assert scores_normal.shape == scores_anomalous.shape == (40,)
    assert np.isfinite(scores_normal).all() and np.isfinite(scores_anomalous).all()
    labels = np.r_[np.zeros(40), np.ones(40)]
    assert roc_auc_score(labels, np.r_[scores_normal, scores_anomalous]) > 0.9
    # a perfectly symmetric image gives the same output under all 8: its score is at least log 8
    assert fitted.anomaly_score(torch.full((1, 1, 16, 16), 0.5))[0] >= math.log(8) - 1e-5
    assert len(fitted.history_) == 6 and fitted.history_[-1] < fitted.history_[0]


def test_the_score_is_the_mean_surprise_at_the_right_transform(fitted):
    x = symmetric_blobs_and_noise(6)
    p = fitted.transform_probabilities(x)
    assert p.shape == (6, 8) and ((p > 0) & (p <= 1)).all()
    np.testing.assert_allclose(fitted.anomaly_score(x), -np.log(p).mean(1), rtol=1e-5)
    np.testing.assert_allclose(fitted.anomaly_score(x, scoring="probability"), -p.mean(1), rtol=1e-5)  # same network
    # computed by hand, image by image
    model = fitted.model_
    with torch.no_grad():
        by_hand = [
            torch.softmax(model(apply_transform(x[i : i + 1], t)), 1)[0, t].item() for i in range(6) for t in range(8)
        ]
    np.testing.assert_allclose(p.ravel(), by_hand, rtol=1e-5)


def test_same_seed_same_scores_and_the_data_is_left_unchanged():
    normal = l_shapes(32)
    copy = normal.clone()
    state = torch.get_rng_state()
    first = tiny_detector().fit(normal).anomaly_score(normal)
    assert torch.equal(normal, copy)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random numbers are not disturbed
    np.testing.assert_array_equal(tiny_detector().fit(normal).anomaly_score(normal), first)
    assert not np.array_equal(tiny_detector(seed=1).fit(normal).anomaly_score(normal), first)


def test_score_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="GTDetector is not fitted yet"):
        GTDetector().anomaly_score(torch.rand(2, 1, 8, 8))
    with pytest.raises(RuntimeError, match="not fitted yet"):
        GTDetector().transform_probabilities(torch.rand(2, 1, 8, 8))


def test_get_params_and_checkpoint_settings():
    detector = tiny_detector(seed=3)
    assert detector.get_params() == dict(
        widths=(4, 8, 8), epochs=3, batch_size=32, lr=1e-3, scoring="log", seed=3, device="cpu", progress=False
    )
    assert detector.checkpoint_settings()["detector"] == "GTDetector"


class Interrupted(Exception):
    """Stands in for a disconnect or a kill."""


def test_an_interrupted_fit_resumes_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    normal = l_shapes(16)
    uninterrupted = tiny_detector().fit(normal)

    saved, save = [], training.save_checkpoint

    def save_then_stop_after_epoch_2(path, model, optimizer, history, *args):
        save(path, model, optimizer, history, *args)
        saved.append(len(history))
        if len(saved) == 2:
            raise Interrupted

    monkeypatch.setattr(training, "save_checkpoint", save_then_stop_after_epoch_2)
    checkpoint = tmp_path / "gt.pt"
    with pytest.raises(Interrupted):
        tiny_detector().fit(normal, checkpoint=checkpoint)
    resumed = tiny_detector().fit(normal, checkpoint=checkpoint)

    assert saved == [1, 2, 3]  # the resumed fit trained epoch 3 only
    assert resumed.history_ == uninterrupted.history_
    weights, expected = resumed.model_.state_dict(), uninterrupted.model_.state_dict()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    np.testing.assert_array_equal(resumed.anomaly_score(normal), uninterrupted.anomaly_score(normal))
    with pytest.raises(ValueError, match="other settings"):
        tiny_detector(widths=(4, 8, 16)).fit(normal, checkpoint=checkpoint)


# ------------------------------------------------------------------ the two scorings

# p(t | T_t(x)) for two images: image 0 is sure of 7 transformations and wrong on one,
# image 1 is lukewarm on all 8. Mean probability: 0.859 and 0.6, so the published
# "probability" score calls image 1 the more anomalous; mean -log p: 0.593 and 0.511, so
# "log" calls image 0 the more anomalous.
RIGHT_PROBABILITIES = torch.tensor([[0.98] * 7 + [0.01], [0.6] * 8])


class FixedClassifier(torch.nn.Module):
    """A "trained" classifier that gives each transformed copy of the images ``x``
    fixed softmax outputs: p(t | T_t(x_i)) = probabilities[i, t], the rest spread
    evenly over the 7 wrong transformations. Any other input is refused."""

    def __init__(self, x, probabilities):
        super().__init__()
        self.logits = {}
        for i in range(len(x)):
            for t in range(N_TRANSFORMS):
                p = probabilities[i, t]
                row = torch.full((N_TRANSFORMS,), (1 - p.item()) / (N_TRANSFORMS - 1))
                row[t] = p
                self.logits[self.key(apply_transform(x[i : i + 1], t)[0])] = row.log()

    @staticmethod
    def key(image):
        return tuple(image.flatten().tolist())

    def forward(self, batch):
        return torch.stack([self.logits[self.key(image)] for image in batch])


@pytest.fixture
def fixed_gt():
    """A GTDetector whose network is a FixedClassifier of two generic images."""
    x = generic_images(n=2, size=3)  # every transformed copy differs from the others
    detector = GTDetector(device="cpu", progress=False)
    detector.model_, detector.device_ = FixedClassifier(x, RIGHT_PROBABILITIES), torch.device("cpu")
    return detector, x


def test_both_scorings_against_a_hand_computation_from_the_probabilities(fixed_gt):
    detector, x = fixed_gt
    np.testing.assert_allclose(detector.transform_probabilities(x), RIGHT_PROBABILITIES.numpy(), rtol=1e-5)
    p = RIGHT_PROBABILITIES.double().numpy()
    published = detector.anomaly_score(x, scoring="probability")  # GT code's simple score: normality = mean p
    np.testing.assert_allclose(published, -p.mean(1), rtol=1e-5)
    ours = detector.anomaly_score(x, scoring="log")
    np.testing.assert_allclose(ours, -np.log(p).mean(1), rtol=1e-5)
    # the two rank the images differently, so a swapped implementation fails
    assert published.argmax() == 1 and ours.argmax() == 0
    # the detector's own scoring is the default; the quick profile's is "log"
    np.testing.assert_array_equal(detector.anomaly_score(x), ours)
    detector.scoring = "probability"
    np.testing.assert_array_equal(detector.anomaly_score(x), published)


def test_an_unknown_scoring_is_refused(fixed_gt):
    with pytest.raises(ValueError, match="unknown scoring 'mean'.*'dirichlet'.*'probability'.*'log'"):
        GTDetector(scoring="mean")
    detector, x = fixed_gt
    with pytest.raises(ValueError, match="unknown scoring 'max'"):
        detector.anomaly_score(x, scoring="max")


def test_the_profiles_scorings():
    assert profiles.settings("full", "gt")["scoring"] == "dirichlet"  # the score the GT code runs
    assert profiles.settings("quick", "gt")["scoring"] == "log"  # the course's, kept for now


# ------------------------------------------------------------------ the Dirichlet score (the GT code's)


def test_inverse_digamma_inverts_digamma():
    x = torch.tensor([0.01, 0.3, 1.0, 2.5, 40.0], dtype=torch.float64)
    torch.testing.assert_close(inverse_digamma(torch.special.digamma(x)), x, rtol=1e-10, atol=1e-12)


def test_the_dirichlet_fit_recovers_the_parameters_of_its_samples():
    alpha = torch.tensor([0.5, 2.0, 8.0, 1.0], dtype=torch.float64)
    samples = torch.distributions.Dirichlet(alpha).sample((200_000,))
    fitted = fit_dirichlet(samples.log())
    torch.testing.assert_close(fitted, alpha, rtol=0.03, atol=0)
    # at the maximum, the gradient of the mean log-likelihood is zero:
    # digamma(sum alpha) - digamma(alpha_k) + mean log p_k = 0 for every k
    gradient = torch.special.digamma(fitted.sum()) - torch.special.digamma(fitted) + samples.log().mean(0)
    assert gradient.abs().max() < 1e-8


def test_the_dirichlet_score_is_minus_the_summed_log_density_up_to_a_constant():
    torch.manual_seed(0)
    alphas = 0.5 + 3 * torch.rand(N_TRANSFORMS, N_TRANSFORMS, dtype=torch.float64)
    log_softmax = torch.log_softmax(torch.randn(5, N_TRANSFORMS, N_TRANSFORMS), dim=2)
    score = gt_score(log_softmax, "dirichlet", alphas)
    density = sum(torch.distributions.Dirichlet(alphas[t]).log_prob(log_softmax[:, t].double().exp()) for t in range(8))
    constant = density + score.double()  # the same for every image: the normalising constants
    torch.testing.assert_close(constant, constant[:1].expand(5), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="needs the alphas"):
        gt_score(log_softmax, "dirichlet")


def test_a_fitted_gt_scores_with_its_dirichlets_of_the_training_images(fitted):
    assert fitted.dirichlet_alphas_.shape == (N_TRANSFORMS, N_TRANSFORMS) and (fitted.dirichlet_alphas_ > 0).all()
    x = generic_images(n=6, size=16, seed=3)
    scores = fitted.anomaly_score(x, scoring="dirichlet")
    log_softmax = transform_log_softmax(fitted.model_, x)
    expected = -((fitted.dirichlet_alphas_ - 1) * log_softmax.double()).sum((1, 2))
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5)
