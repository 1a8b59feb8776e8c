import importlib.util

import pytest
import torch

import crossent
from crossent.study.taggers import build_tagger
from crossent.study.token_losses import make_token_loss, span_minimum_loss

VOCAB = ("<pad>", "<unk>", "EU", "rejects", "German", "call")
TAGS = ("O", "B-ORG", "I-ORG", "B-MISC")
BILSTM = {"name": "bilstm", "embedding_dim": 8, "hidden_size": 8, "layers": 1, "dropout": 0.0}
TRANSFORMER = {
    "name": "transformer",
    "embedding_dim": 8,
    "heads": 2,
    "layers": 1,
    "feedforward": 16,
    "dropout": 0.0,
    "max_length": 6,
}


@pytest.mark.parametrize("config", [BILSTM, TRANSFORMER], ids=["bilstm", "transformer"])
def test_taggers_give_token_logits_that_ignore_padding(config):
    torch.manual_seed(0)
    model = build_tagger(config, VOCAB, TAGS).eval()
    x = torch.tensor([[2, 3, 4, 5], [2, 4, 0, 0]])
    out = model(x)
    assert out.shape == (2, 4, 4)
    # more padding after a sentence changes none of its logits
    wider = torch.cat([x, torch.zeros(2, 2, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(wider)[:, :4], out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x[1:, :2]), out[1:, :2], rtol=1e-5, atol=1e-6)


def test_transformer_refuses_sentences_longer_than_its_positions():
    model = build_tagger(TRANSFORMER, VOCAB, TAGS)
    with pytest.raises(ValueError) as info:
        model(torch.ones(1, 7, dtype=torch.long))
    assert str(info.value).startswith(
        "Expected sentences of at most 6 tokens for model 'transformer' (model.max_length), "
        "but the longest has 7"
    )


def _loss(name, **params):
    return {"name": name, "params": params, "grid": {}, "class_weights": None, "sampler": "none"}


def test_token_loss_is_the_loss_of_the_non_padding_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 4, dtype=torch.float64)
    tags = torch.tensor([[0, 1, 2, 0], [3, 0, -100, -100]])
    keep = tags != -100
    for spec in (_loss("ce"), _loss("gce", q=0.5), _loss("mae")):
        loss = make_token_loss(spec, 4)
        expected = crossent.get_loss(spec["name"], **spec["params"])(logits[keep], tags[keep])
        torch.testing.assert_close(loss(logits, tags), expected)


def test_span_smoothing_passes_the_span_targets_to_the_loss():
    from crossent.core.span import span_smoothed_targets

    logits = torch.randn(2, 4, 4, dtype=torch.float64)
    tags = torch.tensor([[0, 1, 2, 0], [3, 0, -100, -100]])
    loss = make_token_loss(_loss("sgce", q=0.7, label_smoothing=0.1, smoothing="span"), 4)
    target = span_smoothed_targets(tags, 4, 0.1, dtype=torch.float64)[tags != -100]
    p = logits[tags != -100].softmax(1)
    expected = (target * (1 - p**0.7) / 0.7).sum(1).mean()  # SGCE: sum_k P_k (1 - p_k^q)/q
    torch.testing.assert_close(loss(logits, tags), expected)
    # the minimum of CE with span smoothing is the mean entropy of the targets
    ce = make_token_loss(_loss("ce", label_smoothing=0.2, smoothing="span"), 4)
    from crossent.core.span import span_min_achievable_loss

    assert span_minimum_loss(ce, tags) == pytest.approx(
        float(span_min_achievable_loss(tags, 4, 0.2)), abs=1e-6
    )


def test_token_loss_refuses_per_sample_options():
    spec = _loss("ce")
    with pytest.raises(ValueError, match="class_weights"):
        make_token_loss({**spec, "class_weights": {"method": "inverse"}}, 4)
    with pytest.raises(ValueError, match="sampler"):
        make_token_loss({**spec, "sampler": "class_balanced"}, 4)
    with pytest.raises(ValueError, match=r"label_smoothing.*\[0, 0.5\]"):
        make_token_loss(_loss("ce", label_smoothing=0.7, smoothing="span"), 4)


needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="transformers is not installed (pip install 'crossent[hf]')",
)


@needs_transformers
def test_hf_tagger_from_a_config(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = {
        "name": "hf",
        "path": None,
        "config": {
            "model_type": "bert",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 8,
        },
    }
    torch.manual_seed(0)
    model = build_tagger(config, VOCAB, TAGS).eval()
    x = torch.tensor([[2, 3, 4, 0], [5, 0, 0, 0]])
    assert model(x).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="at most 8 tokens for model 'hf'"):
        model(torch.ones(1, 9, dtype=torch.long))


@needs_transformers
def test_hf_tagger_from_a_folder_labels_the_first_sub_token(tmp_path, monkeypatch):
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "eu", "re", "##ject", "##s", "german"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # the vocabulary file positionally: `vocab_file` in transformers 4, `vocab` in 5
    tokenizer = transformers.BertTokenizerFast(str(tmp_path / "vocab.txt"))
    bert = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    torch.manual_seed(0)
    transformers.BertForTokenClassification(bert).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = build_tagger({"name": "hf", "path": str(tmp_path), "config": None}, VOCAB, TAGS)
    model.eval()
    words = torch.tensor([[2, 3, 4]])  # EU rejects German -> [CLS] eu re ##ject ##s german [SEP]
    out = model(words)
    encoded = tokenizer(
        [["EU", "rejects", "German"]], is_split_into_words=True, return_tensors="pt"
    )
    assert encoded.word_ids(0) == [None, 0, 1, 1, 1, 2, None]
    with torch.no_grad():
        full = model.model(**encoded).logits[0]
    torch.testing.assert_close(out[0], full[[1, 2, 5]])  # first sub-token of each word
    model.check_lengths(torch.tensor([[3, 3, 3, 3]]))  # 12 sub-tokens + 2 fit 16 positions
    with pytest.raises(ValueError, match="at most 16 tokens for model 'hf'.*has 20"):
        model.check_lengths(torch.tensor([[3, 3, 3, 3, 3, 3]]))  # 18 + 2 do not
