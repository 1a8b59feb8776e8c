"""A Hugging Face ``AutoModelForTokenClassification`` as a study tagger (model ``hf``).

Two ways to get the model, never from the network (``local_files_only``):

* ``path = "FOLDER"``: a model folder saved with ``save_pretrained`` (config, weights and a
  tokenizer). Each sentence's words are split into sub-tokens by the folder's tokenizer
  (``is_split_into_words=True``); the logits of a word are those of its **first sub-token**,
  so the loss and the metrics see one prediction per word and the other sub-tokens carry no
  label, which is what transformers' token-classification recipe does by labelling them -100.
  Words unknown to the data set's vocabulary reach the tokenizer as ``"<unk>"``: load the
  data with the option ``vocabulary = "all"`` (words of every split, tags unused) to give it
  the real words. The output layer is resized to the data set's tags
  (``ignore_mismatched_sizes``);
* ``config = { model_type = "bert", hidden_size = 64, ... }``: a new model of that
  architecture from ``AutoConfig.for_model``, trained from scratch, with the data set's words
  as its vocabulary (one token per word, no sub-tokens).

Sentences longer than the model's ``max_position_embeddings`` (in sub-tokens) are refused
with a one-line error. transformers is optional: without it, building the model raises an
``ImportError`` saying what to install.

Example:
    >>> model = build_hf_tagger({"name": "hf", "path": None, "config": {"model_type": "bert",
    ...     "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    ...     "intermediate_size": 32}}, ("<pad>", "<unk>", "EU"), ("O", "B-ORG"))  # doctest: +SKIP
    >>> model(torch.tensor([[2, 2, 0]])).shape                                   # doctest: +SKIP
    torch.Size([1, 3, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from crossent.study.taggers import check_length


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ImportError(
            "Expected the transformers package for model 'hf', but it is not installed; "
            "install it with pip install 'crossent[hf]' (or pip install transformers)"
        ) from None
    return transformers


def _limit(model: Any) -> int:
    return int(getattr(model.config, "max_position_embeddings", 0) or 1_000_000)


class HFTagger(nn.Module):
    """``(N, T)`` word ids -> ``(N, T, K)`` logits of a token-classification model."""

    def __init__(self, model: nn.Module, vocabulary: Sequence[str], tokenizer: Any = None) -> None:
        super().__init__()
        self.model = model
        self.vocabulary = tuple(vocabulary)
        self.tokenizer = tokenizer

    def _encode(self, tokens: torch.Tensor) -> Any:
        words = [[self.vocabulary[i] for i in row if i != 0] for row in tokens.tolist()]
        encoded = self.tokenizer(
            words, is_split_into_words=True, padding=True, truncation=False, return_tensors="pt"
        )
        check_length(encoded["input_ids"].shape[1], _limit(self.model), "hf")
        return encoded

    def check_lengths(self, tokens: torch.Tensor, batch: int = 1024) -> None:
        """Raise unless every sentence of ``tokens`` fits the model (in sub-tokens)."""
        if self.tokenizer is None:
            check_length(tokens.shape[1], _limit(self.model), "hf")
            return
        for start in range(0, tokens.shape[0], batch):
            self._encode(tokens[start : start + batch])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Word-level logits: the model's logits at each word's first sub-token."""
        mask = tokens != 0
        if self.tokenizer is None:
            check_length(tokens.shape[1], _limit(self.model), "hf")
            return self.model(input_ids=tokens, attention_mask=mask.long()).logits
        encoded = self._encode(tokens)
        logits = self.model(**encoded.to(tokens.device)).logits
        out = logits.new_zeros(*tokens.shape, logits.shape[-1])
        for row in range(tokens.shape[0]):
            seen: set[int] = set()
            for position, word in enumerate(encoded.word_ids(row)):
                if word is not None and word not in seen:
                    seen.add(word)
                    out[row, word] = logits[row, position]
        return out


def build_hf_tagger(
    config: dict[str, Any], vocabulary: Sequence[str], tag_names: Sequence[str]
) -> HFTagger:
    """The ``hf`` tagger of a run's ``model`` section (``path`` or ``config``; module doc).

    Raises:
        ImportError: transformers is not installed.
        OSError: the folder has no model or tokenizer (transformers' message).
    """
    transformers = _transformers()
    labels = {
        "id2label": dict(enumerate(tag_names)),
        "label2id": {t: i for i, t in enumerate(tag_names)},
    }
    auto = transformers.AutoModelForTokenClassification
    if config.get("path"):
        model = auto.from_pretrained(
            config["path"], local_files_only=True, ignore_mismatched_sizes=True, **labels
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            config["path"], local_files_only=True
        )
        return HFTagger(model, vocabulary, tokenizer)
    settings = dict(config["config"])
    model_type = settings.pop("model_type", "bert")
    hf_config = transformers.AutoConfig.for_model(
        model_type, vocab_size=len(vocabulary), pad_token_id=0, **settings, **labels
    )
    return HFTagger(auto.from_config(hf_config), vocabulary)
