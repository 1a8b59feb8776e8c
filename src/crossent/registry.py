"""Losses by name: ``get_loss("focal(gamma=2)")`` and ``available_losses()``.

A spec is a registry name or a call with keyword arguments whose values are literals::

    spec    := name | name "(" [keyword ("," keyword)*] ")"
    keyword := identifier "=" literal
    literal := number | -number | string | True | False | None | "[" numbers "]" | "(" numbers ")"

It is parsed with :mod:`ast` and never evaluated. Keyword arguments given to
:func:`get_loss` override (or extend) those of the spec. Each name is declared once, in
``_ENTRIES``: its :mod:`crossent.nn` class and :mod:`crossent.functional` function (whose
name is an alias), the input it takes and its other names; the module's constructor checks
the hyper-parameters. What other parts of crossent list per loss (the fused linear path, the
calculator's defaults) is derived from these entries and from the modules' own declarations.
A list given for an argument annotated as a tensor (``weight``, ``pos_weight``, per-class
``alpha``) becomes a tensor of the default dtype.

Example:
    >>> loss = get_loss("ce(label_smoothing=0.1, smoothing='others')")
    >>> type(loss).__name__, loss.label_smoothing, loss.smoothing
    ('CrossEntropyLoss', 0.1, 'others')
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from crossent import functional as F
from crossent import nn

#: The longest spec :func:`parse_spec` reads (a real one is a few dozen characters; far
#: longer ones, e.g. thousands of nested minus signs, would exhaust the parser's recursion).
MAX_SPEC_LENGTH = 1000

#: What input a loss takes, for callers that build inputs for any name (tests, ``calc``).
KINDS = ("multiclass", "binary", "log_probs", "distillation", "overlap")


@dataclass(frozen=True)
class LossEntry:
    """One registry name: its module, its function and the input it takes.

    Attributes:
        module: the :mod:`crossent.nn` class the name builds.
        function: the :mod:`crossent.functional` function the module calls (its name is
            accepted as an alias).
        kind: one of :data:`KINDS`: logits and class indices (``"multiclass"``), one logit per
            element and targets in [0, 1] (``"binary"``), log-probabilities (``"log_probs"``),
            student and teacher logits (``"distillation"``), segmentation logits and masks
            (``"overlap"``).
        summary: a few words for listings.
        aliases: other accepted names (PyTorch's, the literature's).
    """

    module: type[torch.nn.Module]
    function: Callable[..., Tensor]
    kind: str
    summary: str
    aliases: tuple[str, ...] = ()

    @property
    def class_name(self) -> str:
        """The module's class name."""
        return self.module.__name__


_ENTRIES: dict[str, LossEntry] = {
    "ce": LossEntry(nn.CrossEntropyLoss, F.cross_entropy, "multiclass", "cross-entropy"),
    "bce": LossEntry(
        nn.BCEWithLogitsLoss,
        F.binary_cross_entropy_with_logits,
        "binary",
        "binary cross-entropy with logits",
        aliases=("binary_cross_entropy",),
    ),
    "nll": LossEntry(
        nn.NLLLoss, F.nll_loss, "log_probs", "negative log-likelihood of log-probabilities"
    ),
    "focal": LossEntry(nn.FocalLoss, F.focal_loss, "multiclass", "softmax focal loss (Lin et al.)"),
    "sigmoid_focal": LossEntry(
        nn.SigmoidFocalLoss, F.sigmoid_focal_loss, "binary", "sigmoid focal loss (RetinaNet)"
    ),
    "gce": LossEntry(
        nn.GCELoss,
        F.generalized_cross_entropy,
        "multiclass",
        "generalized cross-entropy, Lq (Zhang & Sabuncu)",
        aliases=("lq",),
    ),
    "binary_gce": LossEntry(
        nn.BinaryGCELoss,
        F.binary_generalized_cross_entropy,
        "binary",
        "sigmoid generalized cross-entropy",
    ),
    "sgce": LossEntry(
        nn.SGCELoss,
        F.smooth_generalized_cross_entropy,
        "multiclass",
        "smooth generalized cross-entropy",
    ),
    "binary_sgce": LossEntry(
        nn.BinarySGCELoss,
        F.binary_smooth_generalized_cross_entropy,
        "binary",
        "sigmoid smooth generalized CE",
    ),
    "mae": LossEntry(nn.MAELoss, F.mae_loss, "multiclass", "mean absolute error (Ghosh et al.)"),
    "unhinged": LossEntry(nn.UnhingedLoss, F.unhinged_loss, "multiclass", "unhinged loss 1 - p_t"),
    "rce": LossEntry(
        nn.RCELoss, F.reverse_cross_entropy, "multiclass", "reverse cross-entropy (Wang et al.)"
    ),
    "sce": LossEntry(
        nn.SCELoss, F.symmetric_cross_entropy, "multiclass", "symmetric cross-entropy (Wang et al.)"
    ),
    "nce": LossEntry(
        nn.NCELoss, F.normalized_cross_entropy, "multiclass", "normalized cross-entropy (Ma et al.)"
    ),
    "nfl": LossEntry(
        nn.NFLoss, F.normalized_focal_loss, "multiclass", "normalized focal loss (Ma et al.)"
    ),
    "apl": LossEntry(
        nn.APLoss, F.active_passive_loss, "multiclass", "active-passive loss (Ma et al.)"
    ),
    "poly1": LossEntry(
        nn.Poly1CrossEntropyLoss,
        F.poly1_cross_entropy,
        "multiclass",
        "poly-1 cross-entropy (Leng et al.)",
    ),
    "erce": LossEntry(
        nn.EntropyRegularizedCrossEntropyLoss,
        F.entropy_regularized_cross_entropy,
        "multiclass",
        "confidence penalty (Pereyra et al.)",
        aliases=("confidence_penalty",),
    ),
    "brier": LossEntry(nn.BrierLoss, F.brier_loss, "multiclass", "Brier score as a training loss"),
    "asl": LossEntry(
        nn.AsymmetricLoss,
        F.asymmetric_loss,
        "binary",
        "asymmetric loss, multi-label (Ridnik et al.)",
    ),
    "distill": LossEntry(
        nn.DistillationLoss,
        F.distillation_loss,
        "distillation",
        "knowledge distillation (Hinton)",
        aliases=("distillation", "kd"),
    ),
    "dice": LossEntry(nn.DiceLoss, F.dice_loss, "overlap", "soft Dice loss"),
    "tversky": LossEntry(nn.TverskyLoss, F.tversky_loss, "overlap", "Tversky loss (Salehi et al.)"),
    "focal_tversky": LossEntry(
        nn.FocalTverskyLoss, F.focal_tversky_loss, "overlap", "focal Tversky (Abraham & Khan)"
    ),
    "unified_focal": LossEntry(
        nn.UnifiedFocalLoss, F.unified_focal_loss, "overlap", "unified focal loss (Yeung et al.)"
    ),
}

# Other names: each function's own name and the aliases of the entries.
_ALIASES: dict[str, str] = {
    alias: name
    for name, entry in _ENTRIES.items()
    for alias in (entry.function.__name__, *entry.aliases)
}
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "flsd-53": ("focal", {"gamma": "flsd-53"}),  # Mukhoti et al. 2020
    "jaccard": ("tversky", {"alpha": 1.0, "beta": 1.0}),  # soft IoU
}


def available_losses(*, include_aliases: bool = False) -> list[str]:
    """The registry names, in the order of the documentation.

    Args:
        include_aliases: also list the other accepted names (functional names such as
            ``"focal_loss"``, and presets such as ``"flsd-53"``). Default False.

    Returns:
        The names accepted by :func:`get_loss`.

    Example:
        >>> available_losses()[:4]
        ['ce', 'bce', 'nll', 'focal']
    """
    names = list(_ENTRIES)
    if include_aliases:
        names += [a for a in _ALIASES if a not in _ENTRIES] + list(_PRESETS)
    return names


def get_loss(spec: str, **kwargs: Any) -> torch.nn.Module:
    """Build a loss module from a name or a spec string such as ``"focal(gamma=2)"``.

    Args:
        spec: a name of :func:`available_losses` (or an alias), optionally called with literal
            keyword arguments (see the module docstring for the grammar).
        **kwargs: arguments of the module; they override those of the spec.

    Returns:
        The :mod:`crossent.nn` module.

    Raises:
        ValueError: for an unknown name (listing the valid ones), a malformed spec (showing
            it), an argument the module does not take (naming it and listing the accepted
            ones), or a hyper-parameter out of range (from the module's constructor).
        TypeError: when ``spec`` is not a string, or an argument has the wrong type.

    Example:
        >>> type(get_loss("gce(q=0.7)")).__name__
        'GCELoss'
        >>> get_loss("focal", gamma="flsd-53").gamma
        'flsd-53'
    """
    name, spec_kwargs = parse_spec(spec)
    canonical, preset = _resolve(name)
    cls = loss_class(canonical)
    params = {**preset, **spec_kwargs, **kwargs}
    _check_keywords(canonical, cls, params)
    return cls(**_tensor_arguments(cls, params))


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a spec into its (lower-cased) name and keyword arguments, without evaluating it.

    Args:
        spec: ``"name"`` or ``"name(key=literal, ...)"``.

    Returns:
        ``(name, kwargs)``; tuples of numbers come back as lists.

    Raises:
        ValueError: when the spec is malformed (the message shows it).

    Example:
        >>> parse_spec("focal(gamma=2, alpha=[0.25, 0.75])")
        ('focal', {'gamma': 2, 'alpha': [0.25, 0.75]})
    """
    if not isinstance(spec, str):
        raise TypeError(f"Expected `spec` to be a string, but got {type(spec).__name__}")
    text = spec.strip()
    if text.lower() in _ENTRIES or text.lower() in _ALIASES or text.lower() in _PRESETS:
        return text.lower(), {}
    node = _parse(text)
    if isinstance(node, ast.Name):
        return node.id.lower(), {}
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise _malformed(spec, "it is neither a name nor a call")
    if node.args:
        raise _malformed(spec, "arguments must be given by keyword, e.g. gamma=2")
    kwargs: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise _malformed(spec, "'**' unpacking is not accepted")
        if keyword.arg in kwargs:
            raise _malformed(spec, f"`{keyword.arg}` is given twice")
        kwargs[keyword.arg] = _literal(keyword.value, keyword.arg, text)
    return node.func.id.lower(), kwargs


def _parse(text: str) -> ast.expr:
    """The expression of a spec; a ``ValueError`` for a malformed or overlong one."""
    if len(text) > MAX_SPEC_LENGTH:
        raise _malformed(text, f"it is longer than {MAX_SPEC_LENGTH} characters")
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError):  # nesting too deep for the parser
        raise _malformed(text, "it is neither a name nor a call") from None


def loss_class(name: str) -> type[torch.nn.Module]:
    """The :mod:`crossent.nn` class a registry name (or alias) builds.

    Raises:
        ValueError: for an unknown name.
    """
    return _ENTRIES[_resolve(name)[0]].module


def loss_function(name: str) -> Callable[..., Tensor]:
    """The :mod:`crossent.functional` function of a registry name (or alias).

    Example:
        >>> loss_function("sgce").__name__
        'smooth_generalized_cross_entropy'
    """
    return _ENTRIES[_resolve(name)[0]].function


def loss_kind(name: str) -> str:
    """What input the loss takes: one of :data:`KINDS` (see :class:`LossEntry`).

    Example:
        >>> loss_kind("sigmoid_focal"), loss_kind("dice")
        ('binary', 'overlap')
    """
    return _ENTRIES[_resolve(name)[0]].kind


def _resolve(name: str) -> tuple[str, dict[str, Any]]:
    """Canonical name and preset arguments of a name or alias; ``ValueError`` if unknown."""
    key = name.lower()
    if key in _PRESETS:
        return _PRESETS[key][0], dict(_PRESETS[key][1])
    key = _ALIASES.get(key, key)
    if key not in _ENTRIES:
        others = ", ".join(available_losses(include_aliases=True)[len(_ENTRIES) :])
        raise ValueError(
            f"Unknown loss {name!r}: expected one of {', '.join(_ENTRIES)} (other accepted "
            f"names: {others})"
        )
    return key, {}


def _check_keywords(name: str, cls: type[torch.nn.Module], params: dict[str, Any]) -> None:
    signature = inspect.signature(cls)
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return
    accepted = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in params:
        if key not in accepted:
            raise ValueError(
                f"Unknown argument `{key}` for loss {name!r} ({cls.__name__}): expected one of "
                f"{', '.join(accepted)}"
            )


def _tensor_arguments(cls: type[torch.nn.Module], params: dict[str, Any]) -> dict[str, Any]:
    """Turn lists given for tensor-annotated arguments into tensors of the default dtype."""
    signature = inspect.signature(cls).parameters
    out = dict(params)
    for key, value in params.items():
        annotation = str(signature[key].annotation) if key in signature else ""
        if isinstance(value, list | tuple) and "Tensor" in annotation:
            out[key] = torch.tensor(value, dtype=torch.get_default_dtype())
    return out


def _literal(node: ast.expr, key: str, spec: str) -> Any:
    """A literal keyword value: number (maybe negated), string, bool, None, list of numbers."""
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, bool | int | float | str)
    ):
        return node.value
    number = _as_number(node)
    if number is not None:
        return number
    if isinstance(node, ast.List | ast.Tuple):
        numbers = [_as_number(e) for e in node.elts]
        if all(n is not None for n in numbers):
            return numbers
    raise _malformed(
        spec,
        f"the value of `{key}` must be a literal (a number, a string, True, False, None or a "
        f"list of numbers), not {_shortened(ast.get_source_segment(spec, node) or '')}",
    )


def _as_number(node: ast.expr) -> int | float | None:
    """The value of ``3``, ``-0.5`` or ``+2`` (not of a bool); ``None`` for anything else."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if not isinstance(node.value, bool):
            return sign * node.value
    return None


def _shortened(text: str) -> str:
    """``text``, or its start and its length when it is long (no megabyte messages)."""
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _malformed(spec: str, reason: str) -> ValueError:
    return ValueError(
        f"Malformed loss spec {_shortened(spec)!r}: {reason}. Expected a name such as 'gce' or a "
        'call with literal keyword arguments such as "focal(gamma=2)" or '
        "\"focal(gamma='flsd-53')\""
    )
