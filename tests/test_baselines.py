"""The trivial baselines (Lecture 1): the distance to the mean training image,
and the reconstruction error of PCA."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from anomaly_edu.detectors import MeanImageDetector, PCADetector
from anomaly_edu.experiments.methods import make_detector
from anomaly_edu.profiles import get_profile


def images(n, shape=(1, 6, 6), seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def flat(x):
    return x.flatten(1).double().numpy()


def sklearn_error(train, test, n_components, seed=0):
    """PCA's reconstruction error, computed with scikit-learn here and not by the package."""
    pca = PCA(n_components=n_components, random_state=seed).fit(flat(train))
    return ((flat(test) - pca.inverse_transform(pca.transform(flat(test)))) ** 2).sum(1)


# ------------------------------------------------------------------ mean image


def test_mean_image_scores_the_squared_distance_to_the_mean_training_image():
    train, test = images(20, (1, 4, 5), seed=0), images(7, (1, 4, 5), seed=1)
    mean = train.double().numpy().mean(0)
    expected = ((test.double().numpy() - mean) ** 2).reshape(7, -1).sum(1)
    detector = MeanImageDetector().fit(train)
    scores = detector.anomaly_score(test)
    assert isinstance(scores, np.ndarray) and scores.shape == (7,)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    np.testing.assert_allclose(detector.anomaly_score(train.mean(0, keepdim=True)), [0.0], atol=1e-10)


def test_mean_image_works_on_colour_images_and_a_refit_forgets_the_first_data():
    first, second = images(10, (3, 4, 4), seed=2), images(10, (3, 4, 4), seed=3)
    detector = MeanImageDetector().fit(first).fit(second)
    np.testing.assert_allclose(detector.anomaly_score(second.mean(0, keepdim=True)), [0.0], atol=1e-10)


# ------------------------------------------------------------------ PCA


def test_pca_knows_the_distance_to_a_plane_of_normal_images():
    """Normal 2x2 images lie on a plane through the grey image; PCA with two
    components reconstructs them exactly and scores any image by its squared
    distance to that plane."""
    grey = np.full(4, 0.5)
    u, v, w = np.array([[1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]]) / 2  # orthonormal
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-0.4, 0.4, (2, 30))
    normal = grey + a[:, None] * u + b[:, None] * v
    distance = np.array([0.0, 0.1, -0.3, 0.5])
    off_plane = grey + 0.2 * u - 0.1 * v + distance[:, None] * w
    as_images = lambda x: torch.tensor(x, dtype=torch.float64).reshape(-1, 1, 2, 2)  # noqa: E731
    assert all(0 <= x.min() and x.max() <= 1 for x in (normal, off_plane))

    detector = PCADetector(n_components=2).fit(as_images(normal))
    np.testing.assert_allclose(detector.anomaly_score(as_images(normal)), 0, atol=1e-12)
    np.testing.assert_allclose(detector.anomaly_score(as_images(off_plane)), distance**2, atol=1e-12)
    # one component is not enough: normal images off its line get a positive score
    assert PCADetector(n_components=1).fit(as_images(normal)).anomaly_score(as_images(normal)).max() > 1e-3


@pytest.mark.parametrize("n_components", [1, 5, 0.9])
def test_pca_scores_are_scikit_learns_reconstruction_error(n_components):
    train, test = images(50, seed=0), images(9, seed=1)
    scores = PCADetector(n_components=n_components, max_train=None, seed=4).fit(train).anomaly_score(test)
    assert isinstance(scores, np.ndarray) and scores.shape == (9,)
    np.testing.assert_allclose(scores, sklearn_error(train, test, n_components, seed=4), rtol=1e-8)


def test_pca_with_more_components_reconstructs_better():
    train, test = images(50, seed=0), images(9, seed=1)
    few, many = (PCADetector(n_components=k).fit(train).anomaly_score(test) for k in (2, 20))
    assert (many < few).all()


def test_max_train_is_a_seeded_random_subset():
    train, test = images(60, seed=0), images(9, seed=1)

    def scores(**settings):
        return PCADetector(n_components=3, **settings).fit(train).anomaly_score(test)

    np.testing.assert_array_equal(scores(max_train=20, seed=1), scores(max_train=20, seed=1))
    assert not np.allclose(scores(max_train=20, seed=1), scores(max_train=20, seed=2))
    assert not np.allclose(scores(max_train=20, seed=1), scores(max_train=None, seed=1))
    np.testing.assert_allclose(scores(max_train=60, seed=1), scores(max_train=None, seed=1))
    # the subset is drawn from all training images, not their first max_train
    assert not np.allclose(scores(max_train=20, seed=1), sklearn_error(train[:20], test, 3, seed=1))


@pytest.mark.parametrize("n_components", [0, -3, 1.0, 1.5, 0.0, True, "16", None])
def test_bad_n_components_are_refused(n_components):
    with pytest.raises(ValueError, match="n_components must be"):
        PCADetector(n_components=n_components)


@pytest.mark.parametrize("max_train", [0, -1, 2.5, True])
def test_bad_max_train_is_refused(max_train):
    with pytest.raises(ValueError, match="max_train must be"):
        PCADetector(max_train=max_train)


def test_more_components_than_training_images_says_what_to_do():
    with pytest.raises(ValueError, match=r"n_components=16 but PCA can find at most 10 .*at most 10, a fraction"):
        PCADetector(n_components=16).fit(images(10))
    with pytest.raises(ValueError, match=r"at most 5 .*\(max_train=5\)"):
        PCADetector(n_components=8, max_train=5).fit(images(40))


@pytest.mark.parametrize("detector", [MeanImageDetector(), PCADetector(n_components=2)])
def test_score_before_fit_is_refused(detector):
    with pytest.raises(RuntimeError, match="not fitted yet: call fit"):
        detector.anomaly_score(images(2))


@pytest.mark.parametrize("detector", [MeanImageDetector(), PCADetector(n_components=2)])
def test_images_are_checked(detector):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        detector.fit(images(8)[:, 0])
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        detector.fit(images(8) * 255)


# ------------------------------------------------------------------ through the registry


@pytest.mark.parametrize("name", ["mean-image", "pca"])
def test_both_run_through_the_registry_with_the_quick_profile(name):
    quick = get_profile("quick")
    detector = make_detector(name, quick, seed=0, device="cpu", progress=False)
    assert detector.get_params() == {**quick[name], **({"seed": 0} if name == "pca" else {})}
    train = images(40, (1, 8, 8), seed=0)
    anomalies = images(5, (1, 8, 8), seed=1).clamp(0.9, 1)  # bright images, far from the training ones
    scores = detector.fit(train).anomaly_score(torch.cat([train[:5], anomalies]))
    assert scores.shape == (10,) and scores[5:].min() > scores[:5].max()


# ------------------------------------------------------------------ under attack (Lecture 7)


def test_the_mean_images_differentiable_score_has_the_gradient_two_times_the_difference():
    train, test = images(30), images(5, seed=1)
    detector = MeanImageDetector().fit(train)
    x = test.clone().requires_grad_(True)
    scores = detector.differentiable_score(x)
    (gradient,) = torch.autograd.grad(scores.sum(), x)
    assert np.allclose(scores.detach().numpy(), detector.anomaly_score(test))
    assert torch.allclose(gradient, 2 * (test - train.mean(0)), atol=1e-6)


def test_pcas_differentiable_score_is_scikit_learns_error_and_its_gradient_is_the_residual():
    train, test = images(40), images(5, seed=1)
    detector = PCADetector(n_components=3, max_train=None).fit(train)
    x = test.clone().requires_grad_(True)
    scores = detector.differentiable_score(x)
    assert np.allclose(scores.detach().numpy(), sklearn_error(train, test, 3), rtol=1e-5)
    (gradient,) = torch.autograd.grad(scores.sum(), x)
    pca = PCA(n_components=3).fit(flat(train))
    centred = flat(test) - pca.mean_
    residual = centred - centred @ pca.components_.T @ pca.components_
    assert np.allclose(gradient.flatten(1).numpy(), 2 * residual, atol=1e-5)


@pytest.mark.parametrize("detector", [MeanImageDetector(), PCADetector(n_components=2)])
def test_an_attack_raises_a_baselines_score_on_normal_images(detector):
    from anomaly_edu.score_attacks import attack_scores

    train, test = images(30), images(6, seed=1)
    detector.fit(train)
    attacked = attack_scores(detector, test, torch.zeros(6, dtype=torch.long), eps=0.05, steps=5)
    assert (attacked - test).abs().max() <= 0.05 + 1e-6
    assert (detector.anomaly_score(attacked) > detector.anomaly_score(test)).all()
