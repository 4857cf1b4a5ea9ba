import torch
import torch.nn.functional as F

from anomaly_edu import adversarial_training, attacks, profiles, training


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def tiny_batch(n=32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_adversarial_loss_is_the_loss_on_pgd_examples():
    model, (x, y) = tiny_model(), tiny_batch()
    loss = adversarial_training.adversarial_loss(eps=0.1, alpha=0.03, steps=5, random_start=False)(model, x, y)
    x_adv = attacks.pgd(model, x, y, eps=0.1, alpha=0.03, steps=5)
    assert torch.isclose(loss, F.cross_entropy(model(x_adv), y))
    assert loss > F.cross_entropy(model(x), y)
    assert loss.grad_fn is not None


def test_adversarial_training_plugs_into_the_training_loop():
    model, (x, y) = tiny_model(), tiny_batch()
    history = training.train(
        model,
        x,
        y,
        batch_loss=adversarial_training.adversarial_loss(eps=0.1, alpha=0.03, steps=3),
        epochs=3,
        batch_size=8,
        progress=False,
    )
    assert len(history) == 3 and all(h > 0 for h in history)


def test_robust_accuracy_at_eps_zero_is_the_clean_accuracy_and_drops_under_attack():
    model, (x, y) = tiny_model(), tiny_batch()
    y = model(x).argmax(1)  # all correct when clean
    assert adversarial_training.robust_accuracy(model, x, y, eps=0) == 1.0
    assert adversarial_training.robust_accuracy(model, x, y, eps=0.5, steps=10) < 1.0


def test_input_gradient_matches_autograd():
    model, (x, y) = tiny_model(), tiny_batch(4)
    gradient = attacks.input_gradient(model, x, y)
    assert all(p.grad is None for p in model.parameters())  # the parameters' .grad is left alone
    x_var = x.clone().requires_grad_(True)
    F.cross_entropy(model(x_var), y).backward()
    assert torch.allclose(gradient, x_var.grad)


def test_train_classifier_uses_the_profile_settings(mnist):
    (x, y), _ = mnist
    settings = dict(profiles.settings("quick", "cnn"), epochs=1, max_train=256)
    model, history = adversarial_training.train_classifier(x, y, settings, progress=False)
    assert len(history) == 1 and not model.training
    settings = dict(profiles.settings("quick", "adv_cnn"), epochs=1, max_train=128, steps=2)
    model, history = adversarial_training.train_classifier(x, y, settings, adversarial=True, progress=False)
    assert len(history) == 1
