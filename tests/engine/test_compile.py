"""``torch.compile(model, fullgraph=True)`` on CPU for a model calling every registry loss.

One compiled model returns all the registry losses (inputs of each kind from
``tests.reference_registry.inputs``), so the compiler runs once: ``fullgraph=True`` fails on
any graph break (a host read such as ``bool(t.any())``, a data-dependent branch). That model
is traced by ``aot_eager`` (Dynamo and AOTAutograd, the forward and backward graphs, without
generating code: inductor's C++ build of 26 losses takes ~50 s on 2 cores); the default
backend (inductor) compiles the issue's classifier with cross-entropy and focal loss. While
tracing, every loss takes its differentiable formula (``crossent.core.autograd``); values
and gradients must equal the eager analytic path.
"""

import torch
import torch.nn.functional as F

import crossent
from crossent import registry
from tests.reference_registry import inputs


class EveryLoss(torch.nn.Module):
    """A model whose forward returns the loss of every registry name on its inputs."""

    def __init__(self):
        super().__init__()
        self.names = registry.available_losses()
        self.losses = torch.nn.ModuleList(registry.get_loss(n) for n in self.names)
        self.data = {kind: inputs(kind)[0][1:] for kind in registry.KINDS}

    def forward(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        values = []
        for name, loss in zip(self.names, self.losses, strict=True):
            kind = registry.loss_kind(name)
            values.append(loss(logits[kind], *self.data[kind]))
        return torch.stack(values)


def _logits():
    return {kind: inputs(kind)[1].detach().clone().requires_grad_() for kind in registry.KINDS}


def test_every_registry_loss_compiles_with_fullgraph():
    model = EveryLoss()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    logits = _logits()
    got = compiled(logits)
    got_grads = torch.autograd.grad(got.sum(), list(logits.values()))
    logits = _logits()
    expected = model(logits)
    expected_grads = torch.autograd.grad(expected.sum(), list(logits.values()))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grads, expected_grads)


def test_issue_model_compiles_in_one_graph_like_pytorchs_loss():
    """A classifier head + ``crossent.cross_entropy`` / ``focal_loss`` on its full logits: one
    graph, as with ``F.cross_entropy``, compiled by the default backend (inductor)."""
    head = torch.nn.Linear(8, 5)
    x, t = torch.randn(16, 8), torch.randint(0, 5, (16,))

    def step(x, t):
        z = head(x)
        return crossent.cross_entropy(z, t, label_smoothing=0.1) + crossent.focal_loss(z, t)

    explained = torch._dynamo.explain(step)(x, t)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(x, t)
    grads = torch.autograd.grad(loss, list(head.parameters()))
    expected = torch.autograd.grad(step(x, t), list(head.parameters()))
    torch.testing.assert_close(grads, expected)
    plain = torch._dynamo.explain(lambda x, t: F.cross_entropy(head(x), t))(x, t)
    assert plain.graph_break_count == 0  # the same holds for PyTorch's own loss
