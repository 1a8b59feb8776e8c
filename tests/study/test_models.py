import pytest
import torch

from crossent.study import build_model

MLP = {"name": "mlp", "hidden": [16, 8], "dropout": 0.1}
CNN = {"name": "cnn", "channels": [4, 8], "kernel_size": 3, "hidden": [16], "dropout": 0.0}


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        ({"name": "linear"}, (64,)),
        ({"name": "linear"}, (1, 40)),
        (MLP, (30,)),
        (MLP, (3, 8, 8)),
        (CNN, (1, 40)),
        (CNN, (3, 32, 32)),
        (CNN, (1, 8, 8)),
    ],
)
def test_models_map_inputs_to_logits(config, shape):
    model = build_model(config, shape, num_classes=7)
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 7)


def test_cnn_is_1d_for_sequences_and_2d_for_images():
    seq = build_model(CNN, (1, 40), 10)
    img = build_model(CNN, (3, 16, 16), 10)
    assert any(isinstance(m, torch.nn.Conv1d) for m in seq.modules())
    assert not any(isinstance(m, torch.nn.Conv2d) for m in seq.modules())
    assert any(isinstance(m, torch.nn.Conv2d) for m in img.modules())


def test_cnn_rejects_tabular_data():
    with pytest.raises(
        ValueError, match="Expected `model.name` to be 'linear' or 'mlp' for tabular"
    ):
        build_model(CNN, (64,), 10)


def test_unknown_model():
    with pytest.raises(ValueError, match="Expected `model.name` to be one of"):
        build_model({"name": "resnet"}, (64,), 10)


def test_models_are_seeded():
    torch.manual_seed(3)
    a = build_model(MLP, (20,), 4)
    torch.manual_seed(3)
    b = build_model(MLP, (20,), 4)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
