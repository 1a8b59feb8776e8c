"""crossent.integrations.hf.loss_func: the Trainer's compute_loss_func, per task."""

import torch
import torch.nn.functional as F

from tests.integrations import hf_helpers as h

transformers = h.transformers
hf = __import__("crossent.integrations.hf", fromlist=["hf"])
import crossent  # noqa: E402


def _train(tok, **trainer_kwargs):
    model = h.seeded(lambda: transformers.LlamaForCausalLM(h.llama_config(len(tok))))
    collator = transformers.DataCollatorForLanguageModeling(tok, mlm=False)
    trainer = transformers.Trainer(
        model=model,
        args=h.training_args(trainer_kwargs.pop("out_dir")),
        train_dataset=h.lm_dataset(tok),
        data_collator=collator,
        **trainer_kwargs,
    )
    trainer.train()
    return h.logged_losses(trainer), torch.cat([p.detach().flatten() for p in model.parameters()])


def test_trainer_curve_matches_the_default_trainer_at_accumulation_2(tmp_path):
    tok = h.tokenizer()
    default_curve, default_params = _train(tok, out_dir=str(tmp_path / "a"))
    fn = hf.loss_func("ce", task="causal_lm")
    curve, params = _train(tok, out_dir=str(tmp_path / "b"), compute_loss_func=fn)
    assert len(curve) == 3
    torch.testing.assert_close(torch.tensor(curve), torch.tensor(default_curve))
    torch.testing.assert_close(params, default_params, rtol=1e-5, atol=1e-6)

    # The test can tell: a batch mean (what a hand-written compute_loss_func often returns)
    # weights the micro-batches' tokens unequally and doubles the step at accumulation 2.
    def batch_mean(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits[:, :-1].reshape(-1, outputs.logits.shape[-1])
        return F.cross_entropy(logits, labels[:, 1:].reshape(-1))

    _, wrong = _train(tok, out_dir=str(tmp_path / "c"), compute_loss_func=batch_mean)
    assert (wrong - default_params).abs().max() > 1e-3


def test_causal_lm_gives_the_models_own_loss_and_honours_num_items():
    tok = h.tokenizer()
    model = h.seeded(lambda: transformers.LlamaForCausalLM(h.llama_config(len(tok))))
    batch = h.lm_batch(tok, h.CORPUS[:4])
    labels = batch.pop("labels")
    out = model(**batch)
    fn = hf.loss_func("ce", task="causal_lm")
    torch.testing.assert_close(fn(out, labels), model(**batch, labels=labels).loss)
    # sum / n: n is the step's item count, not this batch's
    n = torch.tensor(40)
    total = F.cross_entropy(
        out.logits[:, :-1].reshape(-1, len(tok)), labels[:, 1:].reshape(-1), reduction="sum"
    )
    torch.testing.assert_close(fn(out, labels, num_items_in_batch=n), total / 40)
    torch.testing.assert_close(fn(out, labels, num_items_in_batch=40), total / 40)
    own = model(**batch, labels=labels, num_items_in_batch=n).loss
    torch.testing.assert_close(fn(out, labels, num_items_in_batch=n), own)
    # already-shifted targets (a collator's shift_labels) are used as they are
    shifted = hf.shift_labels(labels)
    torch.testing.assert_close(fn(out, None, shift_labels=shifted), fn(out, labels))


def test_focal_causal_lm_equals_the_functional_loss_on_shifted_tokens():
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[1, 4:] = -100
    fn = hf.loss_func("focal(gamma=2, label_smoothing=0.1)", task="causal_lm")
    flat, target = logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1)
    expected = crossent.focal_loss(flat, target, gamma=2, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(fn({"logits": logits}, labels, 9), expected / 9)
    torch.testing.assert_close(fn((logits,), labels), expected / (target != -100).sum())


def test_token_classification_and_masked_lm_give_the_models_own_loss():
    tok = h.tokenizer()
    batch = h.lm_batch(tok, h.CORPUS[:3])
    labels = batch.pop("labels")
    config = h.llama_config(len(tok), num_labels=4)
    model = h.seeded(lambda: transformers.LlamaForTokenClassification(config)).eval()
    token_labels = (labels % 4).masked_fill(labels == -100, -100)
    out = model(**batch)
    fn = hf.loss_func("ce", task="token_classification")
    torch.testing.assert_close(fn(out, token_labels), model(**batch, labels=token_labels).loss)

    bert = h.seeded(lambda: transformers.BertForMaskedLM(h.bert_config(len(tok)))).eval()
    masked = labels.clone()
    masked[:, ::2] = -100
    out = bert(**batch)
    fn = hf.loss_func("ce", task="masked_lm")
    torch.testing.assert_close(fn(out, masked), bert(**batch, labels=masked).loss)


def test_sequence_classification_single_and_multi_label():
    tok = h.tokenizer()
    batch = h.lm_batch(tok, h.CORPUS[:4])
    del batch["labels"]
    config = h.llama_config(len(tok), num_labels=3)
    model = h.seeded(lambda: transformers.LlamaForSequenceClassification(config)).eval()
    out = model(**batch)
    labels = torch.tensor([0, 2, 1, 2])
    fn = hf.loss_func("ce", task="sequence_classification")
    torch.testing.assert_close(fn(out, labels), model(**batch, labels=labels).loss)
    torch.testing.assert_close(
        fn(out, labels, num_items_in_batch=8), model(**batch, labels=labels).loss / 2
    )

    multi = torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]])
    model.config.problem_type = None
    own = model(**batch, labels=multi).loss  # transformers: float labels -> BCE
    fn = hf.loss_func("bce", task="sequence_classification")
    torch.testing.assert_close(fn(out, multi), own)
    torch.testing.assert_close(fn(out, multi, num_items_in_batch=24), own / 2)
    focal = hf.loss_func("sigmoid_focal(gamma=2)", task="sequence_classification")
    expected = crossent.sigmoid_focal_loss(out.logits, multi, gamma=2, reduction="sum") / 12
    torch.testing.assert_close(focal(out, multi), expected)


def test_overlap_loss_for_sequences_is_weighted_by_the_batch_share():
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    fn = hf.loss_func("dice", task="sequence_classification")
    own = crossent.dice_loss(logits, labels)
    torch.testing.assert_close(fn({"logits": logits}, labels), own)
    torch.testing.assert_close(fn({"logits": logits}, labels, num_items_in_batch=12), own / 2)


def test_loss_module_spec_and_options():
    module = crossent.nn.GCELoss(q=0.5)
    logits, labels = torch.randn(2, 5, 4), torch.randint(0, 4, (2, 5))
    fn = hf.loss_func(module, task="token_classification")
    expected = crossent.generalized_cross_entropy(logits.reshape(-1, 4), labels.reshape(-1), q=0.5)
    torch.testing.assert_close(fn({"logits": logits}, labels), expected)
    assert module.reduction == "mean"  # the user's module is left as it was
    by_option = hf.loss_func("gce", task="token_classification", q=0.5)
    torch.testing.assert_close(by_option({"logits": logits}, labels), expected)


def test_bad_input_is_refused_with_a_clear_error():
    import pytest

    cases = [
        (("ce",), {"task": "translation"}, ValueError, "Expected `task` to be one of"),
        (("dice",), {"task": "causal_lm"}, ValueError, "does not decompose over tokens"),
        (("tversky",), {"task": "token_classification"}, ValueError, "does not decompose"),
        (("bce",), {"task": "masked_lm"}, ValueError, "takes multi-label targets"),
        (("nll",), {"task": "causal_lm"}, ValueError, "log-probabilities"),
        (("distill",), {"task": "sequence_classification"}, ValueError, "teacher"),
        (("ce(reduction='sum')",), {"task": "causal_lm"}, ValueError, "reduction is the Trainer"),
        (("ce",), {"task": "causal_lm", "reduction": "sum"}, ValueError, "reduction='sum'"),
        ((torch.nn.CrossEntropyLoss(),), {"task": "causal_lm"}, TypeError, "crossent.nn loss"),
        ((3,), {"task": "causal_lm"}, TypeError, "Expected `spec`"),
        ((crossent.nn.FocalLoss(),), {"task": "causal_lm", "gamma": 1}, TypeError, "gamma"),
    ]
    for args, kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            hf.loss_func(*args, **kwargs)

    fn = hf.loss_func("ce", task="sequence_classification")
    with pytest.raises(ValueError, match="float labels are multi-label targets"):
        fn({"logits": torch.randn(2, 3)}, torch.rand(2, 3))
    with pytest.raises(ValueError, match="regression"):
        fn({"logits": torch.randn(2, 1)}, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="Expected `labels`"):
        fn({"logits": torch.randn(2, 3)}, None)
    bce = hf.loss_func("bce", task="sequence_classification")
    with pytest.raises(ValueError, match="shaped like the logits"):
        bce({"logits": torch.randn(2, 3)}, torch.tensor([0, 1]))
    token = hf.loss_func("ce", task="token_classification")
    with pytest.raises(ValueError, match="one per position"):
        token({"logits": torch.randn(2, 5, 3)}, torch.zeros(2, 4, dtype=torch.long))
