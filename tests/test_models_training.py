import pytest
import torch

from anomaly_edu import models, training


def test_mlp_autoencoder_matches_the_talk():
    ae = models.MLPAutoencoder()
    sizes = [(layer.in_features, layer.out_features) for layer in ae.modules() if isinstance(layer, torch.nn.Linear)]
    assert sizes == [(784, 512), (512, 256), (256, 128), (128, 256), (256, 512), (512, 784)]
    assert sum(isinstance(m, torch.nn.Sigmoid) for m in ae.modules()) == 6
    x = torch.rand(3, 1, 28, 28)
    assert ae(x).shape == x.shape and ae.encode(x).shape == (3, 128)
    assert 0 <= ae(x).min() and ae(x).max() <= 1


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_conv_autoencoder_keeps_the_shape(channels, size):
    ae = models.ConvAutoencoder(channels, size)
    x = torch.rand(2, channels, size, size)
    assert ae(x).shape == x.shape


def test_deep_svdd_net_has_no_bias_and_no_affine_batch_norm():
    net = models.DeepSVDDNet()
    assert all(not name.endswith("bias") for name, _ in net.named_parameters())
    assert all(not m.affine for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net(torch.rand(4, 1, 28, 28)).shape == (4, 32)


def test_mnist_cnn_outputs_logits():
    assert models.MnistCNN()(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_training_reduces_the_loss_and_is_seeded():
    x = torch.rand(64, 1, 28, 28)

    def run():
        training.set_seed(0)
        ae = models.MLPAutoencoder()
        history = training.train(
            ae, x, batch_loss=training.reconstruction_loss, epochs=5, batch_size=16, seed=0, progress=False
        )
        return ae, history

    ae1, h1 = run()
    ae2, h2 = run()
    assert h1[-1] < h1[0]
    assert h1 == h2  # same seed, same numbers
    assert all(torch.equal(a, b) for a, b in zip(ae1.state_dict().values(), ae2.state_dict().values()))


def test_training_loop_passes_targets_to_the_batch_loss():
    x, y = torch.rand(40, 1, 28, 28), torch.randint(0, 10, (40,))
    seen = []

    def loss(model, xb, yb):
        seen.append(len(yb))
        return training.classification_loss(model, xb, yb)

    training.train(models.MnistCNN(), x, y, batch_loss=loss, epochs=2, batch_size=16, progress=False)
    assert seen == [16, 16, 8, 16, 16, 8]


def test_denoising_loss_adds_noise_but_targets_the_clean_image():
    x = torch.full((4, 1, 2, 2), 0.5)
    inputs = []

    def model(z):
        inputs.append(z)
        return x

    assert training.denoising_loss(0.3)(model, x).item() == 0  # output == clean target
    assert not torch.equal(inputs[0], x) and inputs[0].min() >= 0 and inputs[0].max() <= 1
    with pytest.raises(ValueError, match="noise_std"):
        training.denoising_loss(-1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0, "batch_size": 4}, "at least 1"),
        ({"epochs": 1, "batch_size": 0}, "at least 1"),
    ],
)
def test_training_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.train(
            models.MnistCNN(),
            torch.rand(4, 1, 28, 28),
            batch_loss=training.reconstruction_loss,
            progress=False,
            **kwargs,
        )


def test_training_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="samples"):
        training.train(
            models.MnistCNN(),
            torch.rand(4, 1, 28, 28),
            torch.zeros(3, dtype=torch.long),
            batch_loss=training.classification_loss,
            epochs=1,
            batch_size=2,
            progress=False,
        )


def test_accuracy_and_pick_device():
    model = models.MnistCNN()
    x = torch.rand(10, 1, 28, 28)
    y = model(x).argmax(1)
    assert training.accuracy(model, x, y) == 1.0
    assert training.pick_device("cpu").type == "cpu"
    assert training.pick_device(None).type in ("cpu", "cuda")


def test_dead_weights_are_zeroed_and_nothing_else_changes():
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1e-31, -1e-35, 0.5, 0.0], [1e-29, -2e-31, 1e-38, 3.0], [1.0] * 4]))
    before = model.weight.clone()
    assert training.zero_dead_weights(model) == 4  # 1e-31, -1e-35, -2e-31 and the denormal 1e-38
    expected = before.clone()
    expected[0, :2] = 0
    expected[1, 1:3] = 0
    assert torch.equal(model.weight, expected)  # 1e-29 is kept: only what cannot matter goes
    assert training.zero_dead_weights(model) == 0


def test_training_with_weight_decay_leaves_no_dead_weight():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    with torch.no_grad():
        model[0].bias[:8] = -100.0  # eight units that never fire: only weight decay moves their weights
    x = torch.rand(64, 8)
    training.train(
        model,
        x,
        batch_loss=training.reconstruction_loss,
        epochs=30,
        batch_size=1,
        lr=0.1,
        weight_decay=0.5,
        progress=False,
    )
    weights = torch.cat([p.detach().abs().flatten() for p in model.parameters()])
    assert not ((weights > 0) & (weights < training.DEAD_WEIGHT)).any()
    assert (model[0].weight[:8] == 0).any()  # the dead units' weights reached zero, not a denormal


def test_training_flushes_denormals_and_restores_them_afterwards():
    seen = []

    def loss_that_looks(model, x, y=None):
        seen.append(training.denormals_are_flushed())
        return training.reconstruction_loss(model, x)

    assert not training.denormals_are_flushed()  # Python, NumPy and hypothesis need denormals
    can_flush = torch.set_flush_denormal(True)  # x86 can; a CPU that cannot answers False
    torch.set_flush_denormal(False)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    training.train(model, torch.rand(8, 4), batch_loss=loss_that_looks, epochs=2, batch_size=4, progress=False)
    assert seen == [can_flush] * 4  # every step of training ran with denormals flushed
    assert not training.denormals_are_flushed()
    assert (torch.tensor([1e-37]) * 0.01).item() > 0  # a denormal float32 again
    with pytest.raises(RuntimeError, match="stop"), training.flushed_denormals():
        raise RuntimeError("stop")
    assert not training.denormals_are_flushed()  # restored after an error too
