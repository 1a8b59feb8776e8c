"""crossent.integrations.hf.patch_causal_lm: a causal LM's training loss without its logits."""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.integrations import hf_helpers as h

transformers = h.transformers
hf = __import__("crossent.integrations.hf", fromlist=["hf"])


def _pair(tok, **config):
    """A tiny Llama and a patched copy with the same weights."""
    model = h.seeded(lambda: transformers.LlamaForCausalLM(h.llama_config(len(tok), **config)))
    return model, copy.deepcopy(model)


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _assert_same_step(ref_out, out, ref, patched):
    torch.testing.assert_close(out.loss, ref_out.loss)
    ref_out.loss.backward()
    out.loss.backward()
    ref_grads, grads = _grads(ref), _grads(patched)
    assert ref_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("tied", [False, True])
def test_loss_and_gradients_equal_the_original(tied):
    tok = h.tokenizer()
    ref, model = _pair(tok, tie_word_embeddings=tied)
    hf.patch_causal_lm(model, chunk_size=5)
    batch = h.lm_batch(tok, h.CORPUS[:4])  # padded: -100 labels at the ends
    out = model(**batch)
    assert out.logits is None
    _assert_same_step(ref(**batch), out, ref, model)


def test_focal_equals_the_unpatched_model_with_the_same_loss():
    tok = h.tokenizer()
    ref, model = _pair(tok)
    hf.set_model_loss(ref, "focal(gamma=2, label_smoothing=0.1)")
    hf.patch_causal_lm(model, "focal(gamma=2)", label_smoothing=0.1)
    batch = h.lm_batch(tok, h.CORPUS[4:8])
    items = torch.tensor(60)
    _assert_same_step(
        ref(**batch, num_items_in_batch=items), model(**batch, num_items_in_batch=items), ref, model
    )


def test_shift_labels_logits_to_keep_and_return_dict():
    tok = h.tokenizer()
    ref, model = _pair(tok)
    hf.patch_causal_lm(model)
    batch = h.lm_batch(tok, h.CORPUS[:3])
    labels = batch.pop("labels")
    shifted = hf.shift_labels(labels)
    full = ref(**batch, labels=labels).loss
    torch.testing.assert_close(model(**batch, shift_labels=shifted).loss, full)
    torch.testing.assert_close(model(**batch, labels=labels, shift_labels=shifted).loss, full)
    out = model(**batch, labels=labels, return_dict=False)
    assert isinstance(out, tuple) and out[0].dim() == 0
    torch.testing.assert_close(out[0], full)
    # logits_to_keep: the loss over the kept positions, as on the unpatched logits
    logits = ref(**batch).logits
    flat = torch.nn.functional.cross_entropy
    last3 = flat(logits[:, -3:].reshape(-1, len(tok)), shifted[:, -3:].reshape(-1))
    torch.testing.assert_close(model(**batch, labels=labels, logits_to_keep=3).loss, last3)
    positions = torch.tensor([0, 2, 5])
    picked = flat(logits[:, positions].reshape(-1, len(tok)), shifted[:, positions].reshape(-1))
    torch.testing.assert_close(model(**batch, labels=labels, logits_to_keep=positions).loss, picked)
    mask = batch["attention_mask"].bool()
    masked = flat(logits[mask], shifted[mask])
    torch.testing.assert_close(model(**batch, labels=labels, logits_to_keep=mask).loss, masked)


def test_without_labels_or_in_eval_the_original_forward_runs():
    tok = h.tokenizer()
    ref, model = _pair(tok)
    hf.patch_causal_lm(model)
    batch = h.lm_batch(tok, h.CORPUS[:2])
    labels = batch.pop("labels")
    torch.testing.assert_close(model(**batch).logits, ref(**batch).logits)
    model.eval()
    ref.eval()
    out = model(**batch, labels=labels)
    torch.testing.assert_close(out.logits, ref(**batch).logits)
    torch.testing.assert_close(out.loss, ref(**batch, labels=labels).loss)
    hf.patch_causal_lm(model, logits_in_eval=False)
    out = model(**batch, labels=labels)
    assert out.logits is None
    torch.testing.assert_close(out.loss, ref(**batch, labels=labels).loss)
    generated = model.generate(batch["input_ids"][:1, :3], max_new_tokens=2, do_sample=False)
    expected = ref.generate(batch["input_ids"][:1, :3], max_new_tokens=2, do_sample=False)
    assert torch.equal(generated, expected)


class _LargestVocabTensor(TorchDispatchMode):
    """Records the most rows of vocabulary-wide memory an op's output holds: contiguous
    ``(..., vocab)`` outputs, by storage (so broadcast views without memory, and the transposed
    ``(hidden, vocab)`` view of the output weight, do not count)."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.largest = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.shape[-1:] == (self.vocab,) and t.is_contiguous():
                rows = t.untyped_storage().nbytes() // (self.vocab * t.element_size())
                self.largest = max(self.largest, rows)
        return out


def test_training_step_never_forms_the_token_by_vocab_logits():
    tok = h.tokenizer()
    ref, model = _pair(tok)
    hf.patch_causal_lm(model, chunk_size=4)
    batch = h.lm_batch(tok, h.CORPUS[:4])
    tokens = batch["input_ids"].numel()
    for net, most in ((ref, tokens), (model, 4)):
        with _LargestVocabTensor(len(tok)) as seen:
            net(**batch).loss.backward()
        assert seen.largest == most  # rows of (rows, vocab) tensors: all tokens, or a chunk


def test_mixture_of_experts_auxiliary_loss_is_kept():
    tok = h.tokenizer()
    config = transformers.MixtralConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        output_router_logits=True,
        router_aux_loss_coef=0.5,
        max_position_embeddings=64,
    )
    ref = h.seeded(lambda: transformers.MixtralForCausalLM(config))
    model = hf.patch_causal_lm(copy.deepcopy(ref))
    batch = h.lm_batch(tok, h.CORPUS[:3])
    ref_out, out = ref(**batch), model(**batch)
    assert out.aux_loss is not None and out.aux_loss > 0
    _assert_same_step(ref_out, out, ref, model)


def test_autocast_matches_the_original_under_autocast():
    tok = h.tokenizer()
    ref, model = _pair(tok)
    hf.patch_causal_lm(model)
    batch = h.lm_batch(tok, h.CORPUS[:4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_loss, loss = ref(**batch).loss, model(**batch).loss
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=2e-2)


def test_unsupported_models_and_losses_are_refused():
    tok = h.tokenizer()
    common = {
        "vocab_size": len(tok),
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "max_position_embeddings": 64,
    }
    gemma = transformers.Gemma3ForCausalLM(
        transformers.Gemma3TextConfig(**common, final_logit_softcapping=30.0)
    )
    with pytest.raises(ValueError, match="final_logit_softcapping=30.0"):
        hf.patch_causal_lm(gemma)
    cohere = transformers.CohereForCausalLM(transformers.CohereConfig(**common))
    with pytest.raises(
        ValueError,
        match=r"changes the logits after its output layer \(`logits = logits \* self.logit_",
    ):
        hf.patch_causal_lm(cohere)
    granite = transformers.GraniteForCausalLM(transformers.GraniteConfig(**common))
    with pytest.raises(ValueError, match="logits_scaling"):
        hf.patch_causal_lm(granite)
    bert = transformers.BertLMHeadModel(h.bert_config(len(tok), is_decoder=True))
    with pytest.raises(ValueError, match="but they are `cls.predictions.decoder`"):
        hf.patch_causal_lm(bert)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2)
    )

    class HardCoded(transformers.GPT2LMHeadModel):
        def forward(self, input_ids=None, labels=None, **kwargs):
            logits = self.lm_head(self.transformer(input_ids).last_hidden_state)
            loss = torch.nn.CrossEntropyLoss()(
                logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
            )
            return transformers.modeling_outputs.CausalLMOutput(loss=loss, logits=logits)

    with pytest.raises(ValueError, match="HardCoded.forward computes its loss without"):
        hf.patch_causal_lm(HardCoded(gpt2.config))
    llama = transformers.LlamaForCausalLM(h.llama_config(len(tok)))
    with pytest.raises(ValueError, match="does not decompose over tokens"):
        hf.patch_causal_lm(llama, "dice")
    with pytest.raises(ValueError, match="reduction"):
        hf.patch_causal_lm(llama, "ce", reduction="sum")
    with pytest.raises(TypeError, match="registry spec string"):
        hf.patch_causal_lm(llama, torch.nn.CrossEntropyLoss())


def test_falcon_whose_logits_are_named_lm_logits_is_accepted():
    tok = h.tokenizer()
    config = transformers.FalconConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2
    )
    ref = h.seeded(lambda: transformers.FalconForCausalLM(config))
    model = hf.patch_causal_lm(copy.deepcopy(ref))
    batch = h.lm_batch(tok, h.CORPUS[:3])
    _assert_same_step(ref(**batch), model(**batch), ref, model)


def test_gemma_without_soft_capping_is_accepted():
    tok = h.tokenizer()
    config = transformers.Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        final_logit_softcapping=None,
    )
    ref = h.seeded(lambda: transformers.Gemma3ForCausalLM(config))
    model = hf.patch_causal_lm(copy.deepcopy(ref))
    batch = h.lm_batch(tok, h.CORPUS[:2])
    _assert_same_step(ref(**batch), model(**batch), ref, model)


def _train(tok, out_dir, patch=None):
    model = h.seeded(lambda: transformers.LlamaForCausalLM(h.llama_config(len(tok))))
    collator = transformers.DataCollatorForLanguageModeling(tok, mlm=False)
    kwargs = {"data_collator": collator}
    seen_logits = []
    if patch == "model":
        hf.patch_causal_lm(model, chunk_size=3)
    elif patch == "trainer_kwargs":
        kwargs = hf.causal_lm_trainer_kwargs(model, data_collator=collator, chunk_size=3)
    model.register_forward_hook(lambda m, args, out: seen_logits.append(out.logits))
    data = h.lm_dataset(tok)
    trainer = transformers.Trainer(
        model=model, args=h.training_args(out_dir), train_dataset=data, **kwargs
    )
    trainer.train()
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    training_logits = list(seen_logits)
    eval_loss = trainer.evaluate(data[:5])["eval_loss"]
    return h.logged_losses(trainer), params, training_logits, eval_loss


def test_trainer_with_a_patched_model_follows_the_default_curve(tmp_path):
    tok = h.tokenizer()
    curve, params, _, eval_loss = _train(tok, str(tmp_path / "a"))
    for patch in ("model", "trainer_kwargs"):
        patched_curve, patched_params, logits, patched_eval = _train(
            tok, str(tmp_path / patch), patch
        )
        torch.testing.assert_close(torch.tensor(patched_curve), torch.tensor(curve))
        torch.testing.assert_close(patched_params, params, rtol=1e-5, atol=1e-6)
        assert len(logits) == 6 and all(step_logits is None for step_logits in logits)
        assert patched_eval == pytest.approx(eval_loss, rel=1e-5)
