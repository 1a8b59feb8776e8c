"""Vocabulary-parallel (tensor-parallel) losses over a ``torch.distributed`` process group.

:func:`vocab_parallel_loss` takes each rank's columns of the logits, and
:func:`vocab_parallel_linear_loss` each rank's rows of a column-sharded output layer; both
give every engine loss of the full vocabulary while only row statistics cross the group
(docs/distributed.md). :func:`record_collectives` logs what they send.
"""

from __future__ import annotations

from crossent.distributed.collectives import CollectiveCall, record_collectives
from crossent.distributed.linear import vocab_parallel_linear_loss
from crossent.distributed.loss import term_losses, vocab_parallel_loss

__all__ = [
    "CollectiveCall",
    "record_collectives",
    "term_losses",
    "vocab_parallel_linear_loss",
    "vocab_parallel_loss",
]
