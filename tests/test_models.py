"""Model definitions and the registry (sw.models)."""

import pytest
import torch

from sw import models


@pytest.fixture(autouse=True)
def _one_thread():
    # forward passes of the big models: one thread is fastest on a shared, loaded CPU
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name, classes, expected",
    [
        ("resnet18", 10, 11_173_962),  # CIFAR-10 ResNet-18: 11.17 M
        ("resnet50", 1000, 25_557_032),  # ImageNet ResNet-50: 25.56 M (torchvision figure)
        ("vgg16_bn", 10, 14_724_042),  # 13 conv+BN layers + one 512->10 classifier
        ("densenet121", 10, 6_956_298),  # DenseNet-BC-121, growth 32, CIFAR stem
        ("wrn16_8", 10, 10_961_370),  # WRN-16-8: 11.0 M
    ],
)
def test_parameter_counts(name, classes, expected):
    assert n_params(models.build(name, classes)) == expected


@pytest.mark.parametrize(
    "name, shape",
    [
        ("resnet18", (2, 3, 32, 32)),
        ("vgg16_bn", (2, 3, 32, 32)),
        ("densenet121", (2, 3, 32, 32)),
        ("wrn16_8", (2, 3, 32, 32)),
        ("resnet50", (1, 3, 64, 64)),  # global pooling: any size >= 32 works; 224 is the design
        ("digits_cnn", (5, 1, 8, 8)),
    ],
)
def test_output_shapes(name, shape):
    torch.manual_seed(0)
    m = models.build(name, num_classes=7).eval()
    with torch.no_grad():
        y = m(torch.randn(*shape))
    assert y.shape == (shape[0], 7)
    assert torch.isfinite(y).all()


def test_input_shapes_and_aliases():
    assert models.input_shape("resnet18") == (3, 32, 32)
    assert models.input_shape("resnet50") == (3, 224, 224)
    assert models.input_shape("digits") == (1, 8, 8)
    assert isinstance(models.build("ResNet-18", 10), type(models.build("resnet18", 10)))
    assert models.names()[0] == "resnet18"


def test_unknown_model_error_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*resnet18.*digits_cnn"):
        models.build("resnet19", 10)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        models.build("digits_cnn", bad)


def test_only_swatifiable_layer_types():
    # every compute layer is a plain Conv2d / Linear, so sw.swatify can replace all of them
    m = models.build("densenet121", 10)
    kinds = {type(x) for x in m.modules() if isinstance(x, torch.nn.Conv2d | torch.nn.Linear)}
    assert kinds == {torch.nn.Conv2d, torch.nn.Linear}


def test_digits_cnn_backward():
    m = models.build("digits_cnn", 10)
    loss = m(torch.randn(4, 1, 8, 8)).logsumexp(1).sum()
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
