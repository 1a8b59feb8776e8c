"""Checks on a Hugging Face model class's ``forward``, read from its code.

Does it read ``self.loss_function``, and does it use the output layer's logits as they are
(what the fused causal-LM loss assumes)? Both read the class's own code (its compiled names,
and for the logits its source through :mod:`ast`), so they follow transformers as it changes
rather than a list of model names.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Callable

import torch


def unwrapped_forward(model: torch.nn.Module) -> Callable:
    """The class's ``forward`` under its decorators (``functools.wraps`` chains)."""
    return inspect.unwrap(type(model).forward)


def code_names(code: types.CodeType) -> set[str]:
    """Global and attribute names a code object reads, nested functions included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_names(const)
    return names


def check_reads_loss_function(model: torch.nn.Module) -> None:
    """Raise unless the class's ``forward`` computes its loss through ``self.loss_function``.

    Raises:
        ValueError: naming the class and what its forward uses instead (the BERT family
            builds ``torch.nn.CrossEntropyLoss()`` in its forward; DistilBERT keeps one as an
            attribute), so a loss set through the setter would be silently ignored.
    """
    forward = unwrapped_forward(model)
    names = code_names(forward.__code__)
    if "loss_function" in names:
        return
    used = sorted(n for n in names if "loss" in n.lower() and n != "loss")
    found = f" (it uses {', '.join(used)})" if used else ""
    raise ValueError(
        f"{type(model).__name__}.forward computes its loss without `self.loss_function`"
        f"{found}, so a loss set through `model.loss_function` would be silently ignored; use "
        "crossent.integrations.hf.loss_func(...) as the Trainer's compute_loss_func instead"
    )


def loss_call_takes_items(model: torch.nn.Module) -> bool:
    """Whether ``forward`` can pass ``num_items_in_batch`` to ``self.loss_function``.

    True when some call passes ``**kwargs`` or ``num_items_in_batch=`` (transformers' causal
    and masked LMs); False for transformers' generic token and sequence classification heads,
    which call ``self.loss_function(logits, labels, self.config)`` and so return a batch mean.
    """
    for node in ast.walk(_forward_tree(model)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "loss_function":
            if any(k.arg in (None, "num_items_in_batch") for k in node.keywords):
                return True
    return False


def _forward_tree(model: torch.nn.Module) -> ast.Module:
    """The parsed source of the class's ``forward``; ``ValueError`` when it cannot be read."""
    try:
        source = textwrap.dedent(inspect.getsource(unwrapped_forward(model)))
    except (OSError, TypeError) as error:
        raise ValueError(
            f"Cannot read the source of {type(model).__name__}.forward to check how it computes "
            "its logits and loss"
        ) from error
    return ast.parse(source)


def head_attribute(model: torch.nn.Module, head: torch.nn.Module) -> str:
    """The attribute name under which ``model`` holds its output layer ``head``."""
    for name, child in model.named_children():
        if child is head:
            return name
    found = next((name for name, module in model.named_modules() if module is head), None)
    raise ValueError(
        f"Expected the output embeddings of {type(model).__name__} to be a direct child module "
        f"(such as `lm_head`), but they are `{found}`: its forward changes the hidden states "
        "between the decoder and the output layer"
    )


def check_plain_logits(model: torch.nn.Module, head_name: str) -> None:
    """Raise unless ``forward`` computes ``v = self.<head>(...)`` and leaves ``v`` as it is.

    ``v`` is whatever the head call is assigned to (``logits``, ``lm_logits``, ...); the call
    may be followed by ``.float()`` or ``.contiguous()``. Any other assignment to ``v``
    (soft-capping, a logit scale, a vocabulary slice, ...) is refused, unless it sits under
    ``if self.<attr> is not None:`` (or ``if self.<attr>:``) and that attribute is ``None``
    (falsy) on this model, e.g. Gemma 3's ``final_logit_softcapping`` left unset; so is a head
    call whose result is scaled in the same statement.

    Raises:
        ValueError: quoting the statement, or when the source cannot be read.
    """
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    softcap = getattr(text_config, "final_logit_softcapping", None)
    if softcap is not None:
        raise ValueError(
            f"Expected a model without final logit soft-capping, but {type(model).__name__} has "
            f"config.final_logit_softcapping={softcap!r}: the fused loss takes the logits as "
            "hidden @ W.T + b; set it to None or train without patch_causal_lm"
        )
    cls = type(model).__name__
    tree = _forward_tree(model)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    head_calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Assign) and _is_head_call(n.value, head_name)
    ]
    names = {name for node in head_calls for name in _assigned_names(node)}
    if not names:
        calls = [n for n in ast.walk(tree) if _is_head_call(n, head_name)]
        if not calls:
            raise ValueError(
                f"Expected {cls}.forward to call `self.{head_name}(...)`, but it does not"
            )
        statement = calls[0]
        while not isinstance(statement, ast.stmt) and statement in parents:
            statement = parents[statement]
        raise _changes_logits(cls, statement)
    for node in ast.walk(tree):
        if node in head_calls or not names & _assigned_names(node) or _assigns_none(node):
            continue
        if not _in_dead_branch(node, parents, model):
            raise _changes_logits(cls, node)


def _changes_logits(cls: str, statement: ast.AST) -> ValueError:
    return ValueError(
        f"{cls}.forward changes the logits after its output layer (`{ast.unparse(statement)}`), "
        "which the fused loss (hidden @ W.T + b) does not reproduce; train this model without "
        "patch_causal_lm"
    )


def _assigned_names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    else:
        return set()
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _assigns_none(node: ast.AST) -> bool:
    value = getattr(node, "value", None)
    return isinstance(node, ast.Assign) and isinstance(value, ast.Constant) and value.value is None


def _is_head_call(value: ast.expr, head_name: str) -> bool:
    """``self.<head>(...)``, possibly followed by ``.float()`` or ``.contiguous()``."""
    while (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr in ("float", "contiguous")
        and not value.args
    ):
        value = value.func.value
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == head_name
        and isinstance(func.value, ast.Name)
        and func.value.id == "self"
    )


def _in_dead_branch(node: ast.AST, parents: dict[ast.AST, ast.AST], model: object) -> bool:
    """Whether ``node`` is in the body of an ``if`` that is statically false on ``model``."""
    child = node
    while child in parents:
        parent = parents[child]
        if isinstance(parent, ast.If) and child in parent.body and _is_false(parent.test, model):
            return True
        child = parent
    return False


def _is_false(test: ast.expr, model: object) -> bool:
    """``self.a.b is not None`` with the attribute None, or ``self.a.b`` falsy."""
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.IsNot)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value is None
    ):
        found, value = _self_attribute(test.left, model)
        return found and value is None
    found, value = _self_attribute(test, model)
    return found and not value


def _self_attribute(expr: ast.expr, model: object) -> tuple[bool, object]:
    """The value of an attribute chain ``self.a.b`` on ``model``; ``(False, None)`` otherwise."""
    chain = []
    while isinstance(expr, ast.Attribute):
        chain.append(expr.attr)
        expr = expr.value
    if not (isinstance(expr, ast.Name) and expr.id == "self" and chain):
        return False, None
    value = model
    for attr in reversed(chain):
        if not hasattr(value, attr):
            return False, None
        value = getattr(value, attr)
    return True, value
