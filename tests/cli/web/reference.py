"""crossent's own numbers for a state of the calculator page (what losses.mjs must reproduce).

Class targets and binary targets go through ``crossent calc`` itself (``evaluate_losses``: the
value, the autograd gradient, the chance level and the minimum search); probability targets,
which the command does not take, through the registry's module and autograd (no minimum).
"""

import torch

from crossent import get_loss
from crossent.cli.calc import evaluate_losses

KEYS = ("value", "gradient", "chance", "value_minus_chance", "min_achievable", "excess")


def spec(name, params):
    """``name(key=value, ...)`` with every parameter: a spec ``crossent.get_loss`` parses."""
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def _soft(name, params, logits, target):
    module = get_loss(spec(name, params))
    z = torch.tensor([logits], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([target], dtype=torch.float64)
    value = module(z, p)
    (grad,) = torch.autograd.grad(value, z)
    chance = float(module(torch.zeros_like(z), p))
    return {
        "value": value.item(),
        "gradient": grad.reshape(-1).tolist(),
        "chance": chance,
        "value_minus_chance": value.item() - chance,
        "min_achievable": None,
        "excess": None,
    }


def evaluate(kind, logits, target, name, params):
    """One loss at one state: the dict of :data:`KEYS`, or ``{"error": message}``.

    Args:
        kind: ``"multiclass"`` (``logits`` a list of K floats) or ``"binary"`` (one float).
        target: class index or K probabilities; binary: ``y`` in [0, 1].
        name: registry name; params: its keyword arguments (the page's, the library's names).
    """
    try:
        if kind == "multiclass" and isinstance(target, list):
            return _soft(name, params, logits, target)
        z = [logits] if kind == "binary" else logits
        (row,) = evaluate_losses(z, target, [spec(name, params)], binary=kind == "binary")
    except (ValueError, TypeError) as err:
        return {"error": str(err)}
    return {key: row[key] for key in KEYS}
