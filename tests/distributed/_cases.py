"""The cases the gloo workers loop over: every engine term with its options, on one rank."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import crossent
from crossent.distributed import term_losses, vocab_parallel_loss
from tests.distributed._harness import Checker, leaf

REDUCTIONS = ("mean", "sum", "none")
SLICE = "slice"  # an option given as this rank's slice of the class-weight vector


@dataclass(frozen=True)
class Data:
    """The full problem every rank builds from the same seed."""

    logits: torch.Tensor  # (N, K) float64
    index: torch.Tensor  # (N,) class indices, one ignored (-100)
    probs: torch.Tensor  # (N, K) rows summing to 1 (0 where a logit is -inf)
    weight: torch.Tensor  # (K,) positive class weights

    @classmethod
    def build(
        cls, n: int, k: int, seed: int = 0, masks: dict[int, list[int]] | None = None
    ) -> Data:
        """Random logits (std 3); ``masks`` maps a row to columns that are -inf there (the
        targets avoid them, the probabilities are 0 there)."""
        gen = torch.Generator().manual_seed(seed)
        logits = 3 * torch.randn(n, k, generator=gen, dtype=torch.float64)
        index = torch.randint(0, k, (n,), generator=gen)
        index[2] = -100
        probs = torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)
        for row, masked in (masks or {}).items():
            logits[row, masked] = -torch.inf
            probs[row, masked] = 0
            probs[row] /= probs[row].sum()
            index[row] = next(c for c in range(k) if c not in masked)
        weight = torch.linspace(0.5, 2.0, k, dtype=torch.float64)
        return cls(logits, index, probs, weight)


def variants(name: str, weight: torch.Tensor) -> list[tuple[str, dict, str]]:
    """``(label, options, target kind)`` for one loss: the engine's options and its own."""
    cases = [
        ("plain", {}, "index"),
        ("uniform smoothing", {"label_smoothing": 0.1}, "index"),
        ("others smoothing", {"label_smoothing": 0.2, "smoothing": "others"}, "index"),
        ("full weight", {"weight": weight}, "index"),
        ("sliced weight, smoothing", {"weight": SLICE, "label_smoothing": 0.1}, "index"),
        ("ignore_index=3", {"ignore_index": 3}, "index"),
        ("probabilities", {}, "probs"),
        ("smoothed probabilities, weight", {"label_smoothing": 0.1, "weight": weight}, "probs"),
    ]
    own = {
        "ce": [
            ("z-loss", {"z_loss": 0.01}, "index"),
            (
                "z-loss, smoothing, weight",
                {"z_loss": 0.01, "label_smoothing": 0.1, "weight": weight},
                "index",
            ),
            ("z-loss, probabilities", {"z_loss": 0.01}, "probs"),
        ],
        "focal": [
            ("alpha", {"alpha": weight, "gamma": 1.5}, "index"),
            ("sliced alpha, smoothing", {"alpha": SLICE, "label_smoothing": 0.1}, "index"),
            ("flsd-53", {"gamma": "flsd-53"}, "index"),
        ],
        "gce": [("truncated", {"q": 0.5, "truncate": 0.1}, "index")],
        "poly1": [("epsilon 2", {"epsilon": 2.0}, "index")],
        "rce": [("A=-2", {"A": -2.0}, "probs")],
        "sce": [("alpha, beta", {"alpha": 0.3, "beta": 2.0}, "index")],
        "erce": [("beta", {"beta": 0.5}, "index")],
    }
    cases += own.get(name, [])
    if name == "sgce":  # its default smoothing is "others", which probabilities refuse
        cases = [
            (lb, {"smoothing": "uniform", **o} if k == "probs" else o, k) for lb, o, k in cases
        ]
    return cases


def resolve(options: dict, weight: torch.Tensor, cols: slice) -> tuple[dict, dict]:
    """The options for the reference (full vectors) and for this rank (its slices)."""
    full = {key: weight if v is SLICE else v for key, v in options.items()}
    local = {key: weight[cols] if v is SLICE else v for key, v in options.items()}
    return full, local


def term_case(
    chk: Checker,
    data: Data,
    cols: slice,
    name: str,
    label: str,
    options: dict,
    kind: str,
    reduction: str,
    **layout: object,
) -> None:
    """One loss on this rank's columns against ``get_loss(name)`` on the full logits."""
    case = f"{name} / {label} / {kind} / {reduction} / {layout or 'consecutive'}"
    full_opts, local_opts = resolve(options, data.weight, cols)
    index = data.index
    if "ignore_index" in options:  # the ignored row carries that index
        index = torch.where(index == -100, options["ignore_index"], index)
    target = index if kind == "index" else data.probs
    local_target = index if kind == "index" else data.probs[:, cols]
    ref_in = leaf(data.logits)
    ref = crossent.get_loss(name, reduction=reduction, **full_opts)(ref_in, target)
    local = leaf(data.logits[:, cols])
    chk.run(
        case,
        lambda: vocab_parallel_loss(
            local, local_target, name, reduction=reduction, **local_opts, **layout
        ),
        ref,
    )
    chk.close(case, "gradient", local.grad, ref_in.grad[:, cols])


def every_term(chk: Checker, data: Data, cols: slice, names: list[str] | None = None) -> None:
    """Every variant of every term (or of ``names``) in every reduction."""
    for name in names or term_losses():
        for label, options, kind in variants(name, data.weight):
            for reduction in REDUCTIONS:
                term_case(chk, data, cols, name, label, options, kind, reduction)


def distillation_cases(chk: Checker, data: Data, cols: slice) -> None:
    """Every divergence, with and without labels, at two temperatures, in every reduction."""
    gen = torch.Generator().manual_seed(7)
    teacher = 2 * torch.randn(data.logits.shape, generator=gen, dtype=torch.float64)
    for divergence in ("forward_kl", "reverse_kl", "jsd", "mixed"):
        for temperature in (1.0, 2.5):
            for labels in (None, data.index):
                for reduction in REDUCTIONS:
                    kw = {"temperature": temperature, "divergence": divergence}
                    kw["reduction"] = reduction
                    if labels is not None:
                        kw["alpha"] = 0.3
                    case = f"distill / {kw} / labels {labels is not None}"
                    ref_in = leaf(data.logits)
                    ref = crossent.distillation_loss(ref_in, teacher, labels=labels, **kw)
                    local = leaf(data.logits[:, cols])
                    chk.run(
                        case,
                        lambda local=local, kw=kw, labels=labels: vocab_parallel_loss(
                            local, teacher[:, cols], "kd", labels=labels, **kw
                        ),
                        ref,
                    )
                    chk.close(case, "gradient", local.grad, ref_in.grad[:, cols])
