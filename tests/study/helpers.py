"""Shared helpers of the study tests."""


def tiny_raw(**overrides):
    """A study small enough to train in a fraction of a second per run."""
    raw = {
        "study": {"name": "tiny", "seeds": [0, 1]},
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "training": {"epochs": 3, "batch_size": 256, "lr": 0.01},
        "noise": {"kind": "symmetric", "rates": [0.0, 0.4]},
        "losses": [
            {"label": "ce", "loss": "ce"},
            {"label": "gce", "loss": "gce", "grid": {"q": [0.3, 0.7]}},
        ],
    }
    for key, value in overrides.items():
        raw[key] = value
    return raw


TINY_TOML = """
[study]
name = "tiny"
seeds = [0, 1]
[model]
hidden = [16]
[training]
epochs = 3
batch_size = 256
lr = 0.01
[noise]
rates = [0.0, 0.4]
[[losses]]
loss = "ce"
[[losses]]
label = "gce"
loss = "gce"
grid = { q = [0.3, 0.7] }
"""


def tiny_toml(folder):
    """``tiny_raw()`` as a TOML file in ``folder`` (for the command line)."""
    path = folder / "tiny.toml"
    path.write_text(TINY_TOML, encoding="utf-8")
    return path


def tiny_ner_raw(**overrides):
    """A tagging study small enough to train in about a second per run."""
    raw = {
        "study": {"name": "ner-tiny", "seeds": [0, 1]},
        "data": {"name": "synthetic-ner", "options": {"sentences": 120}},
        "model": {"name": "bilstm", "embedding_dim": 8, "hidden_size": 8},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.02},
        "noise": {"kind": "symmetric", "rates": [0.0, 0.6]},
        "losses": [
            {"label": "ce", "loss": "ce"},
            {"label": "gce", "loss": "gce", "grid": {"q": [0.4, 0.8]}},
            {
                "label": "sgce",
                "loss": "sgce",
                "params": {"q": 0.7, "label_smoothing": 0.1, "smoothing": "span"},
            },
        ],
    }
    for key, value in overrides.items():
        raw[key] = value
    return raw
