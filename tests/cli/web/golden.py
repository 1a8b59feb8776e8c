"""The golden file of the calculator page: crossent's numbers over a grid of page states.

``python -m tests.cli.web.golden`` rewrites ``tests/cli/web/golden.json``; ``test_golden.py`` checks
that the file is what crossent computes today, and ``losses.test.mjs`` (``node --test``) that
the page's ``losses.mjs`` reproduces it.
"""

import json
import math
from pathlib import Path

import torch

import crossent
from tests.cli.web.reference import evaluate

PATH = Path(__file__).with_name("golden.json")
A = math.log(1e-4)

# Every multiclass loss of the page with its parameters (label smoothing added per case).
MULTICLASS = {
    "ce": {},
    "focal": {"gamma": 2.0, "alpha": None},
    "gce": {"q": 0.7},
    "sgce": {"q": 0.7, "label_smoothing": 0.1, "smoothing": "others"},
    "mae": {},
    "rce": {"A": A},
    "sce": {"alpha": 0.1, "beta": 1.0, "A": A},
    "poly1": {"epsilon": 1.0},
    "brier": {},
}
BINARY = {
    "bce": {"label_smoothing": 0.0},
    "sigmoid_focal": {"gamma": 2.0, "alpha": 0.25},
    "binary_gce": {"q": 0.7, "label_smoothing": 0.0},
    "binary_sgce": {"q": 0.7, "label_smoothing": 0.1, "smoothing": "others"},
}
SMOOTHED = ("ce", "focal", "gce", "mae", "rce", "sce", "poly1", "brier")


def _multiclass(logits, target, eps=0.0, smoothing="uniform", **overrides):
    losses = {}
    for name, params in MULTICLASS.items():
        params = dict(params)
        if name in SMOOTHED:
            params.update(label_smoothing=eps, smoothing=smoothing)
        params.update(overrides.get(name, {}))
        losses[name] = params
    return {"kind": "multiclass", "logits": logits, "target": target, "losses": losses}


def _binary(z, y, eps=0.0, **overrides):
    losses = {}
    for name, params in BINARY.items():
        params = dict(params)
        if name in ("bce", "binary_gce"):
            params["label_smoothing"] = eps
        params.update(overrides.get(name, {}))
        losses[name] = params
    return {"kind": "binary", "logits": z, "target": y, "losses": losses}


def _log(probs):
    return [math.log(p) for p in probs]


def cases():
    """The page states of the golden file: typical ones and the edges (p -> 0, p -> 1, K = 2,
    eps = 1, every hyper-parameter at a bound)."""
    torch.manual_seed(0)
    k20 = [round(v, 6) for v in (3 * torch.randn(20, dtype=torch.float64)).tolist()]
    return [
        _multiclass([2.0, 0.5, -1.0], 0),
        _multiclass([2.0, 0.5, -1.0], 2, 0.1),
        _multiclass([2.0, 0.5, -1.0], 1, 0.1, "others"),
        _multiclass(_log([0.9, 0.1]), 0),  # K = 2: the focal article's worked numbers
        _multiclass(_log([0.5, 0.5]), 0),
        _multiclass(_log([0.1, 0.9]), 0, 0.2, "others"),
        _multiclass([-30.0, 0.0, 0.0], 0),  # p_t -> 0
        _multiclass([-40.0, 5.0], 0, 0.05),
        _multiclass([30.0, 0.0, 0.0], 0),  # p_t -> 1
        _multiclass([40.0, 0.0], 0, 0.1),
        _multiclass([12.0, -3.0, 0.0, 1.0], 0, 1.0),  # eps = 1: the uniform target
        _multiclass([1.0, 2.0, 3.0, 4.0], 3, 0.75, "others"),  # eps = (K-1)/K
        _multiclass([1.0, 2.0, 3.0, 4.0], 3, 0.8, "others"),  # beyond it: an error
        _multiclass(k20, 7, 0.05, "others"),
        _multiclass(k20, 19, 0.3),
        _multiclass(
            [0.3, -1.2, 2.2, 0.0],
            2,
            0.1,
            focal={"gamma": 0.5, "alpha": [0.25, 1.0, 2.0, 0.5]},
            gce={"q": 1.0},
            sgce={"q": 0.3, "label_smoothing": 0.2, "smoothing": "uniform"},
            rce={"A": -4.0},
            sce={"alpha": 1.0, "beta": 0.5, "A": -4.0},
            poly1={"epsilon": -1.0},
        ),
        _multiclass(
            [0.3, -1.2, 2.2, 0.0],
            1,
            focal={"gamma": "flsd-53"},
            gce={"q": 0.0},
            sgce={"q": 1.0, "label_smoothing": 0.0},
            sce={"alpha": 0.0, "beta": 0.0},
            poly1={"epsilon": 2.0},
        ),
        _multiclass([2.0, 1.0, -3.0], 0, focal={"gamma": "flsd-53"}),
        _multiclass([0.5, 0.0, -0.5], 1, focal={"gamma": 0.0, "alpha": [1.0, 0.0, 1.0]}),
        _multiclass([2.0, 0.5, -1.0], 0, focal={"alpha": [1.0, 2.0]}),  # wrong length: error
        _multiclass([2.0, 0.5, -1.0, 0.0], [0.7, 0.2, 0.1, 0.0], sgce={"smoothing": "uniform"}),
        _multiclass([2.0, 0.5, -1.0, 0.0], [0.7, 0.2, 0.1, 0.0], 0.1),
        _multiclass([25.0, -25.0, 0.0], [0.0, 0.5, 0.5], 0.0, sgce={"label_smoothing": 0.0}),
        _multiclass([2.0, 0.5, -1.0], [0.6, 0.3, 0.1], 0.1, "others"),  # soft + others: error
        _binary(2.0, 1.0),
        _binary(2.0, 0.0, 0.1),
        _binary(0.0, 1.0),
        _binary(-0.4, 0.3, 0.2, sigmoid_focal={"gamma": 0.0, "alpha": None}),
        _binary(-30.0, 1.0),  # p -> 0
        _binary(30.0, 1.0, binary_sgce={"label_smoothing": 0.5}),  # p -> 1
        _binary(30.0, 0.0, 1.0, sigmoid_focal={"alpha": 1.0}),
        _binary(1.5, 1.0, binary_sgce={"smoothing": "uniform", "label_smoothing": 0.2}),
        _binary(1.5, 1.0, binary_gce={"q": 1.0}, binary_sgce={"label_smoothing": 0.6}),
    ]


def compute():
    """The golden document: every case with crossent's numbers for each of its losses."""
    out = []
    for case in cases():
        expected = {
            name: evaluate(case["kind"], case["logits"], case["target"], name, params)
            for name, params in case["losses"].items()
        }
        out.append({**case, "expected": expected})
    return {
        "about": (
            "crossent's losses at states of the calculator page: python -m tests.cli.web.golden"
        ),
        "crossent": crossent.__version__,
        "cases": out,
    }


def dumps(document):
    """JSON with one case per line (readable diffs, about 70 KB)."""
    head = {k: v for k, v in document.items() if k != "cases"}
    cases = ",\n".join(json.dumps(case) for case in document["cases"])
    return json.dumps(head)[:-1] + ', "cases": [\n' + cases + "\n]}\n"


if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny tensors: faster, and the numbers do not depend on it
    PATH.write_text(dumps(compute()))
    print(f"wrote {PATH}")
