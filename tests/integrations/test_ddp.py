"""crossent losses and the calibration meter under DDP and FSDP: 2 real gloo processes."""

import datetime
import gc

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import crossent
from crossent.calibration import CalibrationMeter

WORLD, ROWS, STEPS, LR = 2, 8, 3, 0.5


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).double()


def _batch(step):
    """The global batch of a step: every third target ignored, so the halves count 2 and 3."""
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(ROWS, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (ROWS,), generator=gen)
    ignored = y.clone()
    ignored[::3] = -100
    return x, y, ignored


class _HeadLoss(nn.Module):
    """A body and an output layer whose loss comes from the hidden states (no logits formed)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Linear(6, 16).double()
        self.head = nn.Linear(16, 4, bias=False).double()

    def forward(self, x, target):
        # the head's weight is read inside forward, where FSDP has gathered it
        hidden = torch.tanh(self.body(x))
        return crossent.linear_cross_entropy(
            hidden, self.head.weight, target, ignore_index=-100, reduction="sum"
        )


def _focal(model, x, y, ignored, n_valid=None):
    return crossent.focal_loss(model(x), y, gamma=2.0)  # the mean: equal rows per process


def _global_mean(total, ignored, n_valid):
    """Mean over the non-ignored targets of the whole batch: sum / global count."""
    if n_valid is None:  # one process
        return total / (ignored != -100).sum()
    # DDP and FSDP average the gradients over the processes: multiply by the world size
    return total * WORLD / n_valid


def _token_mean(model, x, y, ignored, n_valid=None):
    total = crossent.cross_entropy(model(x), ignored, ignore_index=-100, reduction="sum")
    return _global_mean(total, ignored, n_valid)


def _head_mean(model, x, y, ignored, n_valid=None):
    return _global_mean(model(x, ignored), ignored, n_valid)


def _naive_mean(model, x, y, ignored, n_valid=None):
    return crossent.cross_entropy(model(x), ignored, ignore_index=-100)


def _train(model, loss_fn, rank=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        x, y, ignored = _batch(step)
        n_valid = None
        if rank is not None:  # this process's half of the global batch
            half = slice(rank * ROWS // WORLD, (rank + 1) * ROWS // WORLD)
            x, y, ignored = x[half], y[half], ignored[half]
            n_valid = (ignored != -100).sum()
            dist.all_reduce(n_valid)  # the global count of non-ignored targets
        optimizer.zero_grad()
        loss_fn(model, x, y, ignored, n_valid).backward()
        optimizer.step()


def _params(model):
    """The parameters as plain tensors (FSDP's sharded DTensors gathered)."""
    return [getattr(p, "full_tensor", p.detach)() for p in model.parameters()]


def _trained_head(model, rank=None):
    _train(model, _head_mean, rank)
    return getattr(model, "module", model)


def _worker(rank, init_file, out):
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.save(_cases(rank), f"{out}/rank{rank}.pt")
    finally:
        # DDP and FSDP models sit in reference cycles: collect them while the process group is
        # alive (left to the interpreter's exit, PyTorch 2.13 aborts the process now and then:
        # "terminate called without an active exception", 9 of 60 plain-PyTorch DDP runs)
        gc.collect()
        dist.destroy_process_group()


def _cases(rank):
    """Every case's trained parameters (and the synced meter) in this process."""
    from torch.distributed.fsdp import fully_shard

    results = {}
    for name, loss_fn in (("focal", _focal), ("token", _token_mean), ("naive", _naive_mean)):
        model = DistributedDataParallel(_mlp())
        _train(model, loss_fn, rank)
        results[name] = _params(model.module)
    results["head"] = _params(_trained_head(DistributedDataParallel(_HeadLoss()), rank))
    fsdp = _mlp()
    fully_shard(fsdp[0])
    fully_shard(fsdp[2])
    fully_shard(fsdp)
    _train(fsdp, _token_mean, rank)
    results["fsdp_token"] = _params(fsdp)
    head = _HeadLoss()
    fully_shard(head.body)
    fully_shard(head)
    results["fsdp_head"] = _params(_trained_head(head, rank))
    # the meter: each process adds its half of the predictions, sync() sums them
    x = torch.randn(101, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    y = torch.arange(101) % 4
    meter = CalibrationMeter(n_bins=10, from_logits=True)
    with torch.no_grad():
        part = slice(0, 40) if rank == 0 else slice(40, 101)
        meter.update(_mlp()(x[part]), y[part])
    meter.sync()
    results["meter"] = meter.compute()
    return results


@pytest.mark.slow
def test_ddp_and_fsdp_match_one_process_on_the_concatenated_batches(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    single = {}
    for name, loss_fn in (("focal", _focal), ("token", _token_mean)):
        model = _mlp()
        _train(model, loss_fn)
        single[name] = _params(model)
    single["fsdp_token"] = single["token"]
    single["head"] = single["fsdp_head"] = _params(_trained_head(_HeadLoss()))
    for result in ranks:
        for name, expected in single.items():
            for got, want in zip(result[name], expected, strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=name)
        # a per-process mean with ignored targets weights the halves wrongly: it drifts
        pairs = zip(result["naive"], single["token"], strict=True)
        drift = max((a - b).abs().max() for a, b in pairs)
        assert drift > 1e-4

    x = torch.randn(101, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    meter = CalibrationMeter(n_bins=10, from_logits=True)
    with torch.no_grad():
        meter.update(_mlp()(x), torch.arange(101) % 4)
    expected = meter.compute()
    for result in ranks:
        assert result["meter"]["n"] == 101
        for key, value in expected.items():
            assert abs(result["meter"][key] - value) <= 1e-12, key
