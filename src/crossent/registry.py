"""Losses by name: ``get_loss("focal(gamma=2)")`` and ``available_losses()``.

A spec is a registry name or a call with keyword arguments whose values are literals::

    spec    := name | name "(" [keyword ("," keyword)*] ")"
    keyword := identifier "=" literal
    literal := number | -number | string | True | False | None | "[" numbers "]" | "(" numbers ")"

It is parsed with :mod:`ast` and never evaluated. Keyword arguments given to
:func:`get_loss` override (or extend) those of the spec. Each name maps to a module class of
:mod:`crossent.nn` *by class name*, resolved when the loss is built, and the module's
constructor checks the hyper-parameters. A list given for an argument annotated as a tensor
(``weight``, ``pos_weight``, per-class ``alpha``) becomes a tensor of the default dtype.

Example:
    >>> loss = get_loss("ce(label_smoothing=0.1, smoothing='others')")
    >>> type(loss).__name__, loss.label_smoothing, loss.smoothing
    ('CrossEntropyLoss', 0.1, 'others')
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

#: What input a loss takes, for callers that build inputs for any name (tests, ``calc``).
KINDS = ("multiclass", "binary", "log_probs", "distillation", "overlap")


@dataclass(frozen=True)
class LossEntry:
    """One registry name: the :mod:`crossent.nn` class it builds and the input it takes.

    Attributes:
        class_name: name of the module class in :mod:`crossent.nn`.
        kind: one of :data:`KINDS`: logits and class indices (``"multiclass"``), one logit per
            element and targets in [0, 1] (``"binary"``), log-probabilities (``"log_probs"``),
            student and teacher logits (``"distillation"``), segmentation logits and masks
            (``"overlap"``).
        summary: a few words for listings.
        preset: arguments the name fixes (an alias such as ``"flsd-53"``); the spec and the
            keyword arguments of :func:`get_loss` override them.
    """

    class_name: str
    kind: str
    summary: str
    preset: dict[str, Any] = field(default_factory=dict)


_ENTRIES: dict[str, LossEntry] = {
    "ce": LossEntry("CrossEntropyLoss", "multiclass", "cross-entropy"),
    "bce": LossEntry("BCEWithLogitsLoss", "binary", "binary cross-entropy with logits"),
    "nll": LossEntry("NLLLoss", "log_probs", "negative log-likelihood of log-probabilities"),
    "focal": LossEntry("FocalLoss", "multiclass", "softmax focal loss (Lin et al.)"),
    "sigmoid_focal": LossEntry("SigmoidFocalLoss", "binary", "sigmoid focal loss (RetinaNet)"),
    "gce": LossEntry("GCELoss", "multiclass", "generalized cross-entropy, Lq (Zhang & Sabuncu)"),
    "binary_gce": LossEntry("BinaryGCELoss", "binary", "sigmoid generalized cross-entropy"),
    "sgce": LossEntry("SGCELoss", "multiclass", "smooth generalized cross-entropy"),
    "binary_sgce": LossEntry("BinarySGCELoss", "binary", "sigmoid smooth generalized CE"),
    "mae": LossEntry("MAELoss", "multiclass", "mean absolute error (Ghosh et al.)"),
    "unhinged": LossEntry("UnhingedLoss", "multiclass", "unhinged loss 1 - p_t"),
    "rce": LossEntry("RCELoss", "multiclass", "reverse cross-entropy (Wang et al.)"),
    "sce": LossEntry("SCELoss", "multiclass", "symmetric cross-entropy (Wang et al.)"),
    "nce": LossEntry("NCELoss", "multiclass", "normalized cross-entropy (Ma et al.)"),
    "nfl": LossEntry("NFLoss", "multiclass", "normalized focal loss (Ma et al.)"),
    "apl": LossEntry("APLoss", "multiclass", "active-passive loss (Ma et al.)"),
    "poly1": LossEntry("Poly1CrossEntropyLoss", "multiclass", "poly-1 cross-entropy (Leng et al.)"),
    "erce": LossEntry(
        "EntropyRegularizedCrossEntropyLoss", "multiclass", "confidence penalty (Pereyra et al.)"
    ),
    "brier": LossEntry("BrierLoss", "multiclass", "Brier score as a training loss"),
    "distill": LossEntry("DistillationLoss", "distillation", "knowledge distillation (Hinton)"),
    "dice": LossEntry("DiceLoss", "overlap", "soft Dice loss"),
    "tversky": LossEntry("TverskyLoss", "overlap", "Tversky loss (Salehi et al.)"),
    "focal_tversky": LossEntry("FocalTverskyLoss", "overlap", "focal Tversky (Abraham & Khan)"),
    "unified_focal": LossEntry("UnifiedFocalLoss", "overlap", "unified focal loss (Yeung et al.)"),
}

# Other names: the functional names, PyTorch's, and presets.
_ALIASES: dict[str, str] = {
    "cross_entropy": "ce",
    "binary_cross_entropy_with_logits": "bce",
    "binary_cross_entropy": "bce",
    "nll_loss": "nll",
    "focal_loss": "focal",
    "sigmoid_focal_loss": "sigmoid_focal",
    "generalized_cross_entropy": "gce",
    "lq": "gce",
    "binary_generalized_cross_entropy": "binary_gce",
    "smooth_generalized_cross_entropy": "sgce",
    "binary_smooth_generalized_cross_entropy": "binary_sgce",
    "mae_loss": "mae",
    "unhinged_loss": "unhinged",
    "reverse_cross_entropy": "rce",
    "symmetric_cross_entropy": "sce",
    "normalized_cross_entropy": "nce",
    "normalized_focal_loss": "nfl",
    "active_passive_loss": "apl",
    "poly1_cross_entropy": "poly1",
    "entropy_regularized_cross_entropy": "erce",
    "confidence_penalty": "erce",
    "brier_loss": "brier",
    "distillation_loss": "distill",
    "distillation": "distill",
    "kd": "distill",
    "dice_loss": "dice",
    "tversky_loss": "tversky",
    "focal_tversky_loss": "focal_tversky",
    "unified_focal_loss": "unified_focal",
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
        NotImplementedError: when the module class of a known name is missing.

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
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise _malformed(spec, "it is neither a name nor a call") from None
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
        kwargs[keyword.arg] = _literal(keyword.value, keyword.arg, spec)
    return node.func.id.lower(), kwargs


def loss_class(name: str) -> type[torch.nn.Module]:
    """The :mod:`crossent.nn` class a registry name builds (resolved now, by class name).

    Raises:
        ValueError: for an unknown name.
        NotImplementedError: when the class is not (yet) in :mod:`crossent.nn`.
    """
    import crossent.nn

    canonical, _ = _resolve(name)
    class_name = _ENTRIES[canonical].class_name
    cls = getattr(crossent.nn, class_name, None)
    if cls is None:
        raise NotImplementedError(
            f"The loss {canonical!r} is built by crossent.nn.{class_name}, which this version "
            "of crossent does not provide"
        )
    return cls


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
        f"list of numbers), not {ast.unparse(node)}",
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


def _malformed(spec: str, reason: str) -> ValueError:
    return ValueError(
        f"Malformed loss spec {spec!r}: {reason}. Expected a name such as 'gce' or a call with "
        'literal keyword arguments such as "focal(gamma=2)" or "focal(gamma=\'flsd-53\')"'
    )
