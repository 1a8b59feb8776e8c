r"""``crossent calc``: the loss calculator of the seed articles, as a command.

For one prediction (probabilities or logits and a label, or a binary ``p`` and ``y``) it
reports, for each loss: its value; its gradient with respect to the logits (the library's
analytic gradient) and the largest difference from a central finite difference of the loss
(step ``1e-6``, float64); the chance baseline (the loss of the uniform prediction, ``ln K``
for cross-entropy) and the distance from it; and the minimum achievable loss under the
loss's label smoothing with the excess over it.

The minimum is searched over logits ``(m, 0, ..., 0)`` with the margin ``m`` on the label
(``|m| <= 30``, a grid of step 0.05 refined three times around its best point): the smoothed
targets are symmetric in the other classes, so for the convex losses of the family the
minimiser is of this form. For an unsmoothed loss the infimum is approached as ``m -> inf``
and the value at ``m = 30`` (about 0) is shown.

Example:
    >>> rows = evaluate_losses(probs_to_logits([0.7, 0.2, 0.1]), 0, ["ce"])
    >>> round(rows[0]["value"], 3), round(rows[0]["chance"], 4)
    (0.357, 1.0986)
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from crossent.functional.cross_entropy import minimum_over_logits
from crossent.linear import term_losses
from crossent.registry import available_losses, get_loss, loss_class, loss_kind, parse_spec

# The table's rows by default: every loss that is one engine term of the logits, and every
# binary loss (derived from the registry and the modules' declarations).
DEFAULT_MULTICLASS = tuple(term_losses())
DEFAULT_BINARY = tuple(n for n in available_losses() if loss_kind(n) == "binary")
FD_STEP = 1e-6
MARGIN = 30.0

# What each kind of registry loss takes (calc handles the first three).
_KIND_INPUTS = {
    "multiclass": "logits and a class",
    "binary": "one logit and a binary target",
    "log_probs": "log-probabilities and a class",
    "distillation": "student and teacher logits",
    "overlap": "segmentation logits and masks",
}


def probs_to_logits(probs: Sequence[float]) -> list[float]:
    """Logits ``log p`` of probabilities that are > 0 and sum to 1 (within 1e-3, renormalised).

    Example:
        >>> [round(z, 4) for z in probs_to_logits([0.5, 0.5])]
        [-0.6931, -0.6931]
    """
    if len(probs) < 2:
        raise ValueError(f"expected at least 2 probabilities, got {list(probs)}")
    if any(not math.isfinite(p) or p <= 0 for p in probs):
        raise ValueError(
            f"expected probabilities > 0, got {list(probs)} (a probability of 0 is a logit of "
            "-inf: pass --logits with a large negative value instead)"
        )
    total = sum(probs)
    if abs(total - 1.0) > 1e-3:
        raise ValueError(
            f"expected probabilities summing to 1, got a sum of {total:g} (pass unnormalised "
            "scores as --logits)"
        )
    return [math.log(p / total) for p in probs]


def evaluate_losses(
    logits: Sequence[float],
    label: float,
    specs: Sequence[str],
    *,
    binary: bool = False,
    shared: dict[str, Any] | None = None,
    neighbours: tuple[int | None, int | None] | None = None,
) -> list[dict[str, Any]]:
    """Value, gradient, finite-difference check, chance and minimum of each loss.

    Args:
        logits: the ``K`` logits (one logit for ``binary``).
        label: the class index, or the binary target in [0, 1].
        specs: registry names or spec strings (:func:`crossent.get_loss`).
        binary: one logit and a sigmoid instead of ``K`` logits and a softmax.
        shared: arguments applied to every loss that takes them and whose spec does not set
            them (``gamma``, ``q``, ``label_smoothing``).
        neighbours: the tags of the token's left and right neighbours in its sentence
            (``None``: no neighbour on that side): the losses take span smoothing
            (``smoothing="span"``) and report this token's loss.

    Returns:
        One dict per loss: ``name``, ``spec``, ``value``, ``gradient`` (list, with respect to
        the logits), ``gradient_fd`` (its central finite difference), ``fd_max_abs_diff``,
        ``chance`` (the loss of the uniform prediction), ``value_minus_chance``,
        ``min_achievable`` and ``excess`` (value minus the minimum).
    """
    z = torch.tensor([list(logits)], dtype=torch.float64)
    if binary:
        z = z.reshape(1)
        target = torch.tensor([float(label)], dtype=torch.float64)
    else:
        target = torch.tensor([int(label)])
    if neighbours is not None:
        shared = {**(shared or {}), "smoothing": "span"}
    return [_evaluate_one(spec, z, target, binary, shared or {}, neighbours) for spec in specs]


def _build(
    spec: str,
    binary: bool,
    shared: dict[str, Any],
    reduction: str,
    neighbours: tuple[int | None, int | None] | None = None,
) -> Any:
    """The loss as a callable of ``(logits, target)``, with the shared arguments applied."""
    name, spec_kwargs = parse_spec(spec)
    kind = loss_kind(name)
    wanted = ("binary",) if binary else ("multiclass", "log_probs")
    if kind not in wanted:
        mode = "binary (--p/--y)" if binary else "multiclass (--probs/--logits and --label)"
        raise ValueError(
            f"{name!r} takes {_KIND_INPUTS[kind]}, not a {mode} prediction; use one of "
            f"{', '.join(_names_of_kinds(wanted))}"
        )
    accepted = inspect.signature(loss_class(name)).parameters
    extra = {k: v for k, v in shared.items() if k in accepted and k not in spec_kwargs}
    if neighbours is not None:
        return _in_sentence(get_loss(spec, **extra, reduction="none"), neighbours, reduction)
    module = get_loss(spec, **extra, reduction=reduction)
    if kind == "log_probs":
        return lambda x, t: module(torch.log_softmax(x, -1), t)
    return module


def _in_sentence(module: Any, neighbours: tuple[int | None, int | None], reduction: str) -> Any:
    """The loss of a token between its neighbours' tags: rows ``(R, K)`` -> ``(R,)`` or mean.

    Each row is the middle token of a three-token sentence (left, it, right; a missing
    neighbour is ``ignore_index``); the neighbours' own logits are 0 and their losses unused:
    a token's loss depends on its own logits and the sentence's tags only.
    """

    def loss(x: Tensor, t: Tensor) -> Tensor:
        rows = x.reshape(-1, x.shape[-1])
        side = [-100 if n is None else n for n in neighbours]
        tags = torch.tensor([[side[0], 0, side[1]]]).repeat(rows.shape[0], 1)
        tags[:, 1] = t.reshape(-1)
        zeros = torch.zeros_like(rows)
        sentence = torch.stack([zeros, rows, zeros], dim=2)  # (R, K, 3)
        values = module(sentence, tags)[:, 1]
        return values if reduction == "none" else values.mean()

    return loss


def _evaluate_one(
    spec: str,
    z: Tensor,
    target: Tensor,
    binary: bool,
    shared: dict[str, Any],
    neighbours: tuple[int | None, int | None] | None = None,
) -> dict[str, Any]:
    loss = _build(spec, binary, shared, "mean", neighbours)
    x = z.clone().requires_grad_()
    out = loss(x, target)
    (grad,) = torch.autograd.grad(out, x)
    value = out.item()
    fd = _finite_difference(loss, z, target)
    chance = float(loss(torch.zeros_like(z), target))
    if neighbours is None:
        minimum = _minimum(_build(spec, binary, shared, "none"), z, target, binary)
    else:  # the span target is not symmetric in the other classes: search every logit
        minimum = minimum_over_logits(loss, target, tuple(z.shape))
    return {
        "name": parse_spec(spec)[0],
        "spec": spec,
        "value": value,
        "gradient": grad.reshape(-1).tolist(),
        "gradient_fd": fd.reshape(-1).tolist(),
        "fd_max_abs_diff": float((grad - fd).abs().max()),
        "chance": chance,
        "value_minus_chance": value - chance,
        "min_achievable": minimum,
        "excess": value - minimum,
    }


def _finite_difference(loss: Any, z: Tensor, target: Tensor) -> Tensor:
    """Central differences ``(L(z + h e_j) - L(z - h e_j)) / 2h`` for every logit ``j``."""
    flat = z.reshape(-1)
    out = torch.empty_like(flat)
    with torch.no_grad():
        for j in range(flat.numel()):
            step = torch.zeros_like(flat)
            step[j] = FD_STEP
            up = loss((flat + step).reshape(z.shape), target)
            down = loss((flat - step).reshape(z.shape), target)
            out[j] = (up - down) / (2 * FD_STEP)
    return out.reshape(z.shape)


def _minimum(loss: Any, z: Tensor, target: Tensor, binary: bool) -> float:
    """Smallest loss over margins ``m`` in [-30, 30] on the label (a grid refined 3 times)."""
    grid = torch.linspace(-MARGIN, MARGIN, 1201, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(4):
            values = loss(_margin_rows(grid, z, target, binary), target.expand(len(grid)))
            best = int(torch.argmin(values))
            lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
            best_value = float(values[best])
            grid = torch.linspace(float(lo), float(hi), 201, dtype=torch.float64)
    return best_value


def _margin_rows(margins: Tensor, z: Tensor, target: Tensor, binary: bool) -> Tensor:
    if binary:
        return margins.clone()
    rows = torch.zeros(len(margins), z.shape[-1], dtype=torch.float64)
    rows[:, int(target)] = margins
    return rows


def _names_of_kinds(kinds: Sequence[str]) -> list[str]:
    return [n for n in available_losses() if loss_kind(n) in kinds]


def _split_specs(values: Sequence[str]) -> list[str]:
    """Split ``"ce,focal(gamma=2, alpha=None)"`` at the commas outside parentheses/brackets."""
    specs: list[str] = []
    for value in values:
        depth, start = 0, 0
        for i, char in enumerate(value):
            depth += (char in "([") - (char in ")]")
            if char == "," and depth == 0:
                specs.append(value[start:i])
                start = i + 1
        specs.append(value[start:])
    return [s.strip() for s in specs if s.strip()]


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated numbers, got {text!r}", param_hint=option
        ) from None


def _gamma(text: str | None) -> float | str | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # a named schedule such as 'flsd-53'


@click.command("calc")
@click.option("--probs", help="Predicted probabilities of the K classes, e.g. 0.7,0.2,0.1.")
@click.option("--logits", help="Logits of the K classes (instead of --probs), e.g. 2,0.5,-1.")
@click.option("--label", type=int, help="The true class (with --probs or --logits).")
@click.option("--p", "p", type=float, help="Binary: predicted probability of the positive class.")
@click.option("--y", "y", type=float, help="Binary: the target, in [0, 1].")
@click.option(
    "--losses",
    multiple=True,
    help="Registry names or specs, comma-separated or repeated, e.g. 'ce,focal(gamma=1)' "
    f"[default: {','.join(DEFAULT_MULTICLASS)}; binary: {','.join(DEFAULT_BINARY)}].",
)
@click.option("--gamma", help="gamma of every loss that has one (a number or 'flsd-53').")
@click.option("--q", type=float, help="q of every loss that has one (GCE, SGCE).")
@click.option("--smoothing", type=float, help="label_smoothing of every loss that takes it.")
@click.option(
    "--neighbours",
    help="Span smoothing: the tags of the token's left and right neighbours, e.g. 0,2 "
    "('-' for none); every loss then takes smoothing='span'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--web", is_flag=True, help="Serve the calculator as a page on 127.0.0.1 instead.")
@click.option("--port", type=click.IntRange(0, 65535), help="With --web: the port [8765; 0: any].")
@click.option("--open", "open_browser", is_flag=True, help="With --web: open it in the browser.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --web: write the page to DIR/calc.html instead.",
)
def calc(
    probs: str | None,
    logits: str | None,
    label: int | None,
    p: float | None,
    y: float | None,
    losses: tuple[str, ...],
    gamma: str | None,
    q: float | None,
    smoothing: float | None,
    neighbours: str | None,
    as_json: bool,
    web: bool,
    port: int | None,
    open_browser: bool,
    out: Path | None,
) -> None:
    """Loss values, gradients and reference levels for one prediction.

    \b
    crossent calc --probs 0.7,0.2,0.1 --label 0
    crossent calc --logits 2,0.5,-1 --label 2 --losses 'ce,focal(gamma=2)' --smoothing 0.1
    crossent calc --probs 0.6,0.3,0.1 --label 1 --smoothing 0.1 --neighbours 0,2
    crossent calc --p 0.8 --y 1
    crossent calc --web --open          # the calculator as a page in the browser
    """  # noqa: D301 (click's "\b" keeps the examples unwrapped)
    from crossent.cli.web.cli import run_from_calc

    if run_from_calc(web, port, open_browser, out):
        return
    binary, z, target = _prediction(probs, logits, label, p, y)
    specs = _split_specs(losses) or list(DEFAULT_BINARY if binary else DEFAULT_MULTICLASS)
    shared = {"gamma": _gamma(gamma), "q": q, "label_smoothing": smoothing}
    shared = {k: v for k, v in shared.items() if v is not None}
    try:
        rows = evaluate_losses(
            z, target, specs, binary=binary, shared=shared, neighbours=_neighbours(neighbours)
        )
    except (ValueError, TypeError, NotImplementedError) as err:
        raise click.BadParameter(str(err), param_hint="--losses") from None
    k = 2 if binary else len(z)
    report = {
        "kind": "binary" if binary else "multiclass",
        "logits": z,
        "probs": _softmax(z, binary),
        "target": target,
        "num_classes": k,
        "chance_ln_k": math.log(k),
        "smoothing": smoothing,
        "neighbours": _neighbours(neighbours),
        "losses": rows,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_table(report)


def _neighbours(text: str | None) -> tuple[int | None, int | None] | None:
    """``--neighbours L,R`` as two tags (``None`` for ``-``), or ``None`` when not given."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        left, right = (None if p == "-" else int(p) for p in parts)
    except ValueError:
        raise click.BadParameter(
            f"expected two tags L,R (integers, '-' for none), got {text!r}",
            param_hint="--neighbours",
        ) from None
    return left, right


def _prediction(
    probs: str | None, logits: str | None, label: int | None, p: float | None, y: float | None
) -> tuple[bool, list[float], float]:
    """Check the options and return ``(binary, logits, target)``."""
    given = [
        name for name, v in (("--probs", probs), ("--logits", logits), ("--p", p)) if v is not None
    ]
    if len(given) != 1:
        raise click.UsageError(
            "Give exactly one of --probs, --logits (with --label) or --p (with --y)."
        )
    if p is not None:
        if not 0 < p < 1:
            raise click.BadParameter(f"expected a probability in (0, 1), got {p}", param_hint="--p")
        if y is None or not 0 <= y <= 1:
            raise click.BadParameter(f"expected a target in [0, 1], got {y}", param_hint="--y")
        return True, [math.log(p) - math.log1p(-p)], y
    if probs is not None:
        try:
            z = probs_to_logits(_floats(probs, "--probs"))
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--probs") from None
    else:
        z = _floats(logits or "", "--logits")
    if len(z) < 2 or not all(math.isfinite(v) for v in z):
        raise click.BadParameter(
            f"expected at least 2 finite logits, got {z}", param_hint="--logits"
        )
    if label is None:
        raise click.UsageError(
            f"--label is required with {given[0]} (the true class, 0 to {len(z) - 1})"
        )
    if not 0 <= label < len(z):
        raise click.BadParameter(
            f"expected a class in [0, {len(z)}), got {label}", param_hint="--label"
        )
    return False, z, label


def _softmax(z: list[float], binary: bool) -> list[float]:
    t = torch.tensor(z, dtype=torch.float64)
    if binary:
        return [float(torch.sigmoid(t)[0])]
    return torch.softmax(t, 0).tolist()


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a file or a pipe: no need to wrap at 80 columns
        console.width = max(console.width, 120)
    probs = ", ".join(f"{v:.4g}" for v in report["probs"])
    label = "y" if report["kind"] == "binary" else "label"
    title = (
        f"p = [{probs}], {label} = {report['target']:g}, K = {report['num_classes']}, "
        f"chance ln K = {_fmt(report['chance_ln_k'])}"
    )
    if report.get("neighbours") is not None:
        left, right = ("-" if n is None else str(n) for n in report["neighbours"])
        title += f", span smoothing between tags {left} and {right}"
    table = Table(title=title)
    columns = ("loss", "value", "dL/dz", "FD |diff|", "chance", "value - chance", "min", "excess")
    for column in columns:
        table.add_column(column, justify="left" if column in ("loss", "dL/dz") else "right")
    for row in report["losses"]:
        table.add_row(
            row["spec"],
            _fmt(row["value"]),
            "[" + ", ".join(_fmt(g, "+") for g in row["gradient"]) + "]",
            f"{row['fd_max_abs_diff']:.1e}",
            _fmt(row["chance"]),
            _fmt(row["value_minus_chance"], "+"),
            _fmt(row["min_achievable"]),
            _fmt(row["excess"]),
        )
    console.print(table)
    console.print(
        "dL/dz: analytic gradient w.r.t. the logits; FD: max |analytic - central difference|; "
        "chance: the loss of the uniform prediction (value - chance < 0: better than it); min: "
        "the smallest loss reachable under the loss's label smoothing; excess: value - min."
    )


def _fmt(value: float, sign: str = "") -> str:
    """Three decimals, or three significant digits below 0.01 (0.357, 1.865, 0.00105).

    Below 1e-9 a number is shown as 0 (the minimum of an unsmoothed loss is an infimum, about
    1e-13 at the search's largest margin); ``--json`` keeps every digit.
    """
    if abs(value) < 1e-9:
        value = 0.0
    if value == 0 or abs(value) >= 0.01:
        return f"{value:{sign}.3f}"
    return f"{value:{sign}.3g}"
