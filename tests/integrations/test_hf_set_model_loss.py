"""crossent.integrations.hf.set_model_loss: the model computes a crossent loss itself."""

import pytest
import torch

from tests.integrations import hf_helpers as h

transformers = h.transformers
hf = __import__("crossent.integrations.hf", fromlist=["hf"])
import crossent  # noqa: E402


def _token_dataset(tok):
    rows = []
    for line in h.CORPUS:
        ids = tok(line)["input_ids"]
        rows.append({"input_ids": ids, "labels": [i % 3 for i in ids]})
    return rows


def test_setter_works_for_a_llama_token_classifier():
    tok = h.tokenizer()
    config = h.llama_config(len(tok), num_labels=3)
    model = h.seeded(lambda: transformers.LlamaForTokenClassification(config)).eval()
    batch = h.lm_batch(tok, h.CORPUS[:3])
    labels = (batch.pop("labels") % 3).masked_fill(batch["attention_mask"] == 0, -100)
    hf.set_model_loss(model, "focal(gamma=2)")
    out = model(**batch, labels=labels)
    valid = labels != -100
    expected = crossent.focal_loss(out.logits[valid], labels[valid], gamma=2)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.score.weight.grad is not None


def test_setter_raises_for_bert_which_hard_codes_cross_entropy():
    tok = h.tokenizer()
    for cls, extra in [
        (transformers.BertForTokenClassification, {"num_labels": 3}),
        (transformers.BertForSequenceClassification, {"num_labels": 3}),
        (transformers.BertForMaskedLM, {}),
        (transformers.DistilBertForMaskedLM, None),
    ]:
        if extra is None:
            config = transformers.DistilBertConfig(
                vocab_size=len(tok), dim=16, hidden_dim=32, n_layers=1, n_heads=2
            )
        else:
            config = h.bert_config(len(tok), **extra)
        model = cls(config)
        with pytest.raises(ValueError, match=f"{cls.__name__}.forward computes its loss without"):
            hf.set_model_loss(model, "ce")


def test_setter_refuses_other_loss_types():
    tok = h.tokenizer()
    model = transformers.LlamaForQuestionAnswering(h.llama_config(len(tok)))
    with pytest.raises(ValueError, match="loss_type='ForQuestionAnswering'"):
        hf.set_model_loss(model, "ce")


def test_setter_on_a_causal_lm_honours_num_items_and_shift_labels():
    tok = h.tokenizer()
    model = h.seeded(lambda: transformers.LlamaForCausalLM(h.llama_config(len(tok)))).eval()
    batch = h.lm_batch(tok, h.CORPUS[:4])
    own = model(**batch, num_items_in_batch=50).loss
    hf.set_model_loss(model, "ce")
    assert getattr(model, "accepts_loss_kwargs", True) is True
    torch.testing.assert_close(model(**batch, num_items_in_batch=50).loss, own)
    shifted = hf.shift_labels(batch["labels"])
    torch.testing.assert_close(model(**batch, shift_labels=shifted).loss, model(**batch).loss)


def test_token_classifier_trained_at_accumulation_2_keeps_the_loss_scale(tmp_path):
    # transformers' generic token-classification head calls its loss without
    # num_items_in_batch; set_model_loss makes the Trainer divide by the accumulation steps.
    tok = h.tokenizer()
    collator = transformers.DataCollatorForTokenClassification(tok)
    losses = {}
    for accumulation in (1, 2):
        config = h.llama_config(len(tok), num_labels=3)
        model = h.seeded(lambda config=config: transformers.LlamaForTokenClassification(config))
        hf.set_model_loss(model, "ce")
        args = h.training_args(
            str(tmp_path / str(accumulation)),
            gradient_accumulation_steps=accumulation,
            per_device_train_batch_size=4 // accumulation,
            max_steps=1,
        )
        trainer = transformers.Trainer(
            model=model, args=args, train_dataset=_token_dataset(tok), data_collator=collator
        )
        assert trainer.model_accepts_loss_kwargs is False
        trainer.train()
        losses[accumulation] = h.logged_losses(trainer)[0]
    # the mean of two half-batch means against the mean of the batch (not twice it)
    assert losses[2] == pytest.approx(losses[1], rel=0.05)
