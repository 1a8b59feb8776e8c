"""Token-classification models of the tagging study: ``bilstm``, ``transformer`` and ``hf``.

Every tagger maps int64 token ids ``(N, T)`` (0 is padding, 1 unknown) to ``(N, T, K)``
logits; positions of padding get logits too, which the losses and metrics ignore (their tag
is -100).

* ``bilstm``: embedding -> bidirectional LSTM (packed, so padding never reaches the
  backward direction) -> linear layer (Lample et al., 2016, without the CRF);
* ``transformer``: embedding + learned positions -> ``nn.TransformerEncoder`` with a padding
  mask -> linear layer. It has ``max_length`` positions: a longer sentence is refused with a
  one-line error (cut sentences with the data option ``max_length`` instead);
* ``hf``: a Hugging Face ``AutoModelForTokenClassification`` (see
  :mod:`crossent.study.hf_tagger`).

Weights come from PyTorch's global generator: seed it first (the training run does).

Example:
    >>> _ = torch.manual_seed(0)
    >>> model = build_tagger({"name": "bilstm", "embedding_dim": 8, "hidden_size": 8,
    ...                       "layers": 1, "dropout": 0.0}, vocabulary=("<pad>", "<unk>", "a"),
    ...                      tag_names=("O", "B-PER"))
    >>> model(torch.tensor([[2, 2, 0], [2, 0, 0]])).shape
    torch.Size([2, 3, 2])

References:
    Lample et al., `Neural Architectures for Named Entity Recognition
    <https://arxiv.org/abs/1603.01360>`_, 2016.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from crossent.core.checks import check_choice

TAGGERS = ("bilstm", "transformer", "hf")


class BiLSTMTagger(nn.Module):
    """Embedding, a bidirectional LSTM over the unpadded tokens, and a linear output layer."""

    def __init__(
        self,
        vocab_size: int,
        num_tags: int,
        embedding_dim: int = 64,
        hidden_size: int = 64,
        layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=layers,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(2 * hidden_size, num_tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` token ids -> ``(N, T, K)`` logits."""
        lengths = (tokens != 0).sum(dim=1).clamp(min=1).cpu()
        embedded = self.dropout(self.embedding(tokens))
        packed = nn.utils.rnn.pack_padded_sequence(
            embedded, lengths, batch_first=True, enforce_sorted=False
        )
        hidden, _ = self.lstm(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(
            hidden, batch_first=True, total_length=tokens.shape[1]
        )
        return self.output(self.dropout(hidden))


class TransformerTagger(nn.Module):
    """Token and position embeddings, a Transformer encoder with a padding mask, a linear layer.

    Raises ``ValueError`` for sentences longer than ``max_length`` (no position for them).
    """

    def __init__(
        self,
        vocab_size: int,
        num_tags: int,
        embedding_dim: int = 64,
        heads: int = 4,
        layers: int = 2,
        feedforward: int = 128,
        dropout: float = 0.1,
        max_length: int = 128,
    ) -> None:
        super().__init__()
        self.max_length = max_length
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.position = nn.Embedding(max_length, embedding_dim)
        layer = nn.TransformerEncoderLayer(
            embedding_dim, heads, feedforward, dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.output = nn.Linear(embedding_dim, num_tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` token ids -> ``(N, T, K)`` logits."""
        check_length(tokens.shape[1], self.max_length, "transformer")
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        hidden = self.embedding(tokens) + self.position(positions)
        hidden = self.encoder(hidden, src_key_padding_mask=tokens == 0)
        return self.output(hidden)


def check_length(length: int, limit: int, model: str) -> None:
    """Refuse sentences longer than a model's ``limit`` with a one-line error."""
    if length > limit:
        raise ValueError(
            f"Expected sentences of at most {limit} tokens for model {model!r} "
            f"(model.max_length), but the longest has {length}; raise model.max_length or cut "
            "sentences with the data option max_length"
        )


def build_tagger(
    config: dict[str, Any], vocabulary: Sequence[str], tag_names: Sequence[str]
) -> nn.Module:
    """Build the tagger a run config's ``model`` section describes.

    Args:
        config: the ``model`` section: ``name`` (``bilstm`` | ``transformer`` | ``hf``) and
            its sizes (``docs/study.md``).
        vocabulary: the data set's words by token id (``vocabulary[0]`` is padding).
        tag_names: the ``K`` tag names.

    Returns:
        A module mapping ``(N, T)`` token ids to ``(N, T, K)`` logits.
    """
    name = config["name"]
    check_choice("model.name", name, TAGGERS)
    sizes = {k: v for k, v in config.items() if k != "name"}
    if name == "bilstm":
        return BiLSTMTagger(len(vocabulary), len(tag_names), **sizes)
    if name == "transformer":
        return TransformerTagger(len(vocabulary), len(tag_names), **sizes)
    from crossent.study.hf_tagger import build_hf_tagger

    return build_hf_tagger(config, vocabulary, tag_names)
