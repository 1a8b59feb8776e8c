"""A Hugging Face causal LM's training step, patched by crossent or not: peak memory and time.

Usage::

    python benchmarks/bench_hf_causal_lm.py [--vocab 32000] [--hidden 256] [--layers 1]
        [--batch 2] [--seq 512] [--loss ce] [--chunk-size ROWS] [--iters 5] [--out PATH]

A ``LlamaForCausalLM`` built from a random config (offline, float32, CPU, 2 threads): one
forward + backward with ``labels`` (``batch x seq`` tokens), unpatched (its own
``ForCausalLMLoss`` on the ``(tokens, vocab)`` logits, or with ``--loss`` other than ``ce``
the crossent loss on those logits through ``set_model_loss``) against
``crossent.integrations.hf.patch_causal_lm(model, loss)`` (the loss from the hidden states by
``crossent.linear_loss``, default chunk unless ``--chunk-size``). Peak extra memory: each
side in its own process (``MALLOC_MMAP_THRESHOLD_=131072``) after one warm-up step whose
gradients are dropped, so the measured step allocates its own ``.grad``: ``VmHWM - VmRSS
before`` with the peak reset (``benchmarks/_measure.py``). Time: both sides in one process,
interleaved, median of ``--iters`` steps after one warm-up. Writes
``benchmarks/results/hf_causal_lm_cpu.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SIDES = ("unpatched", "patched")
MIB = 1024**2


def build(args: argparse.Namespace, side: str):
    import transformers

    from crossent.integrations import hf

    config = transformers.LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=args.seq,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).train()
    if side == "patched":
        hf.patch_causal_lm(model, args.loss, chunk_size=args.chunk_size)
    elif args.loss != "ce":
        hf.set_model_loss(model, args.loss)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    return model, ids


def prepare_step(model, ids):
    def prepare():
        for p in model.parameters():
            p.grad = None

        def step():
            model(input_ids=ids, labels=ids).loss.backward()

        return step

    return prepare


def child_memory(args: argparse.Namespace, side: str) -> dict:
    torch.set_num_threads(2)
    model, ids = build(args, side)
    prepare = prepare_step(model, ids)
    prepare()()  # warm-up: thread pool, allocator, code paths; its .grad is dropped next
    step = prepare()
    return {"peak_extra_bytes": _measure.peak_extra_bytes(step)}


def child_time(args: argparse.Namespace) -> dict:
    torch.set_num_threads(2)
    sides = {side: prepare_step(*build(args, side)) for side in SIDES}
    times = _measure.interleaved_times(sides, args.iters, warmup=1)
    return {"times": times, "env": _measure.environment()}


def options(args: argparse.Namespace) -> list[str]:
    names = ("vocab", "hidden", "layers", "batch", "seq", "loss", "iters")
    items = [item for name in names for item in (f"--{name}", str(getattr(args, name)))]
    return items + ([] if args.chunk_size is None else ["--chunk-size", str(args.chunk_size)])


def run(args: argparse.Namespace) -> None:
    import transformers

    me = str(Path(__file__).resolve())
    memory = {}
    for side in SIDES:
        env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
        child = _measure.run_child(me, ["--child", "memory", side, *options(args)], env)
        memory[side] = child["peak_extra_bytes"]
    timed = _measure.run_child(me, ["--child", "time", "-", *options(args)], {})
    tokens = args.batch * args.seq
    record = {
        "model": "LlamaForCausalLM (random config)",
        "config": {
            "vocab": args.vocab,
            "hidden": args.hidden,
            "layers": args.layers,
            "tokens": tokens,
            "batch": args.batch,
            "seq": args.seq,
        },
        "loss": args.loss,
        "chunk_size": args.chunk_size,
        "dtype": "float32",
        "logits_bytes": tokens * args.vocab * 4,
        "iterations_after_warmup": args.iters,
        "times_s": timed["times"],
        "median_s": {s: statistics.median(v) for s, v in timed["times"].items()},
        "peak_extra_bytes": memory,
        "transformers": transformers.__version__,
        "environment": timed["env"],
        "note": "2 shared cores; other jobs ran at the same time: read medians only",
    }
    report(record)
    out = Path(args.out or RESULTS / "hf_causal_lm_cpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


def report(rec: dict) -> None:
    c, med, mem = rec["config"], rec["median_s"], rec["peak_extra_bytes"]
    print(
        f"Llama training step, {c['layers']} layer(s), hidden {c['hidden']}, vocab {c['vocab']}, "
        f"{c['tokens']} tokens, loss {rec['loss']!r}, chunk {rec['chunk_size'] or 'default'}, "
        "float32, 2 threads "
        f"(logits alone: {rec['logits_bytes'] / MIB:.0f} MiB)"
    )
    print(f"{'side':10s} {'peak MiB':>9s} {'vs unpatched':>13s} {'median s':>9s} {'vs':>6s}")
    for side in SIDES:
        print(
            f"{side:10s} {mem[side] / MIB:9.0f} {mem[side] / mem['unpatched']:13.2f} "
            f"{med[side]:9.3f} {med[side] / med['unpatched']:6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is None:
        run(args)
    elif args.child[0] == "memory":
        print(json.dumps(child_memory(args, args.child[1])))
    else:
        print(json.dumps(child_time(args)))


if __name__ == "__main__":
    main()
