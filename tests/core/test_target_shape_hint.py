"""``(B, T, K)`` logits with ``(B, T)`` class indices: the error says where the classes go."""

import pytest
import torch

import crossent
from crossent import registry

INDEX_LOSSES = [n for n in registry.available_losses() if registry.loss_kind(n) == "multiclass"]


@pytest.mark.parametrize("name", [*INDEX_LOSSES, "nll"])
def test_sequence_layout_error_hints_at_transpose_or_flatten(name):
    logits = torch.randn(2, 5, 6)  # (B, T, K): a sequence model's output
    target = torch.randint(0, 6, (2, 5))
    loss = registry.get_loss(name)
    with pytest.raises(ValueError, match=r"shape \(2, 6\).*transpose\(1, 2\).*reshape\(-1, 6\)"):
        loss(logits, target)
    by_transpose = registry.get_loss(name, reduction="none")(logits.transpose(1, 2), target)
    flat = registry.get_loss(name, reduction="none")(logits.reshape(-1, 6), target.reshape(-1))
    torch.testing.assert_close(by_transpose.reshape(-1), flat)


def test_other_shape_mismatches_get_no_hint():
    with pytest.raises(ValueError, match=r"shape \(2, 6\) for class-index targets") as err:
        crossent.cross_entropy(torch.randn(2, 5, 6), torch.randint(0, 6, (2, 4)))
    assert "transpose" not in str(err.value)
