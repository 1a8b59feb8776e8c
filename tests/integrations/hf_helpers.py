"""Tiny offline Hugging Face models, a WordPiece tokenizer and a corpus for the hf tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face tests need transformers: pip install 'crossent[hf]'"
)
import torch  # noqa: E402
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CORPUS = [
    "the cat sat on the mat",
    "a dog ran in the park today",
    "the bird sang",
    "my cat likes warm milk and the sun",
    "dogs and cats play",
    "the sun is warm today in the park",
    "a bird flew over the mat",
    "milk is warm",
    "the dog sat",
    "cats like the park and the sun and milk",
    "my bird sang today",
    "a warm mat",
]


def tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A WordPiece tokenizer over the corpus's words (``[PAD]`` is id 0)."""
    words = sorted({w for line in CORPUS for w in line.split()})
    vocab = {token: i for i, token in enumerate(SPECIAL + words)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def llama_config(vocab_size: int, **overrides: object) -> transformers.LlamaConfig:
    """A one-layer Llama with hidden size 16."""
    settings = {
        "vocab_size": vocab_size,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
    }
    return transformers.LlamaConfig(**{**settings, **overrides})


def bert_config(vocab_size: int, **overrides: object) -> transformers.BertConfig:
    """A one-layer BERT with hidden size 16."""
    settings = {
        "vocab_size": vocab_size,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
    }
    return transformers.BertConfig(**{**settings, **overrides})


def seeded(build, seed: int = 0):
    """``build()`` under a fixed seed (so two calls give equal weights)."""
    torch.manual_seed(seed)
    return build()


def lm_batch(tok: transformers.PreTrainedTokenizerFast, lines: list[str]) -> dict:
    """Padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 at padding)."""
    batch = tok(lines, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return {**batch, "labels": labels}


def lm_dataset(tok: transformers.PreTrainedTokenizerFast) -> list[dict]:
    """The corpus as a list of ``{"input_ids": [...]}`` (variable lengths)."""
    return [{"input_ids": tok(line)["input_ids"]} for line in CORPUS]


def training_args(out_dir: str, **overrides: object) -> transformers.TrainingArguments:
    """CPU, no saving or reporting, a few logged steps at gradient accumulation 2.

    Plain SGD: Adam's normalisation would turn the float rounding of a near-zero gradient
    into a visible step, and the comparisons are of the losses, not of the optimiser.
    """
    settings = {
        "output_dir": out_dir,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "max_steps": 3,
        "learning_rate": 0.5,
        "optim": "sgd",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "data_seed": 0,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    return transformers.TrainingArguments(**{**settings, **overrides})


def logged_losses(trainer: transformers.Trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]
