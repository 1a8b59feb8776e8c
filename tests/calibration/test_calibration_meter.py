import datetime
import io
import json
import pickle
from multiprocessing.reduction import ForkingPickler

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from crossent.calibration import (
    CalibrationMeter,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)


def _data(n=2000, k=6, seed=0, binary=False):
    gen = torch.Generator().manual_seed(seed)
    if binary:
        probs = torch.rand(n, generator=gen, dtype=torch.float64)
        labels = (torch.rand(n, generator=gen, dtype=torch.float64) < probs**2).long()
        return probs, labels
    z = 2 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=gen).squeeze(1)
    return torch.softmax(1.7 * z, dim=1), labels


def _one_shot(probs, labels, n_bins=15, from_logits=False):
    kw = {"n_bins": n_bins, "from_logits": from_logits}
    if probs.dim() == 1:
        predicted = torch.sigmoid(probs) > 0.5 if from_logits else probs > 0.5
        accuracy = (predicted == (labels == 1)).double().mean()
    else:
        accuracy = (probs.argmax(dim=1) == labels).double().mean()
    return {
        "ece": expected_calibration_error(probs, labels, **kw).item(),
        "mce": maximum_calibration_error(probs, labels, **kw).item(),
        "rmsce": expected_calibration_error(probs, labels, norm="l2", **kw).item(),
        "brier": brier_score(probs, labels, from_logits=from_logits).item(),
        "nll": negative_log_likelihood(probs, labels, from_logits=from_logits).item(),
        "accuracy": accuracy.item(),
        "n": probs.shape[0],
    }


def _assert_same(result, expected, tol=1e-12):
    assert set(result) == set(expected)
    for key, value in expected.items():
        assert abs(result[key] - value) <= tol, (key, result[key], value)
    assert isinstance(result["n"], int)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("from_logits", [False, True])
def test_streaming_equals_one_shot(binary, from_logits):
    probs, labels = _data(binary=binary)
    if from_logits:
        probs = torch.logit(probs) if binary else torch.log(probs) + 0.3
    meter = CalibrationMeter(n_bins=15, from_logits=from_logits)
    for start in range(0, probs.shape[0], 333):
        meter.update(probs[start : start + 333], labels[start : start + 333])
    _assert_same(meter.compute(), _one_shot(probs, labels, from_logits=from_logits))


def test_update_can_mix_logits_and_probabilities():
    probs, labels = _data(n=600)
    meter = CalibrationMeter(n_bins=15)
    meter.update(torch.log(probs[:300]) - 1.0, labels[:300], from_logits=True)
    meter.update(probs[300:], labels[300:])
    _assert_same(meter.compute(), _one_shot(probs, labels))


def test_merge_equals_one_shot_and_is_order_free():
    probs, labels = _data()
    parts = [CalibrationMeter(10) for _ in range(3)]
    for i, part in enumerate(parts):
        part.update(probs[i::3], labels[i::3])
    merged = CalibrationMeter(10).merge(parts[0]).merge(parts[1]).merge(parts[2])
    _assert_same(merged.compute(), _one_shot(probs, labels, n_bins=10))
    reverse = CalibrationMeter(10).merge(parts[2]).merge(parts[1]).merge(parts[0])
    _assert_same(reverse.compute(), merged.compute(), tol=1e-15)


def test_state_is_independent_of_n():
    meter = CalibrationMeter(n_bins=15)
    size = meter._state.numel()
    probs, labels = _data(n=5000)
    meter.update(probs, labels)
    assert meter._state.numel() == size == 3 * 15 + 4


def test_merge_and_kind_checks():
    multi = CalibrationMeter(10)
    multi.update(*_data(n=50, k=2))
    binary = CalibrationMeter(10)
    binary.update(*_data(n=50, binary=True))
    with pytest.raises(ValueError, match=r"\(N, K\) top-label predictions.*\(N,\) binary"):
        multi.merge(binary)
    with pytest.raises(ValueError, match=r"`other` to have n_bins=10, but got 5"):
        multi.merge(CalibrationMeter(5))
    with pytest.raises(TypeError, match="CalibrationMeter"):
        multi.merge({"ece": 0.1})
    with pytest.raises(ValueError, match=r"\(N,\) binary"):
        binary.update(*_data(n=50, k=2))
    three = CalibrationMeter(10)
    three.update(*_data(n=50, k=3))
    with pytest.raises(ValueError, match=r"`other` to have 2 classes, but got 3"):
        multi.merge(three)


def test_compute_before_update_and_reset():
    meter = CalibrationMeter()
    with pytest.raises(RuntimeError, match="at least one update"):
        meter.compute()
    meter.update(*_data(n=30))
    assert meter.compute()["n"] == 30
    meter.reset()
    with pytest.raises(RuntimeError):
        meter.compute()


def test_sync_without_process_group_is_a_no_op():
    probs, labels = _data(n=100)
    meter = CalibrationMeter()
    meter.update(probs, labels)
    before = meter.compute()
    meter.sync()
    assert meter.compute() == before


def _sync_worker(rank, world_size, meter, init_file, out_dir):
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        probs, labels = _data(n=1001)
        # uneven shards, several updates each
        shard = slice(0, 400) if rank == 0 else slice(400, 1001)
        for part in torch.split(torch.arange(1001)[shard], 150):
            meter.update(probs[part], labels[part])
        local = meter.compute()
        meter.sync()
        first = meter.compute()
        meter.sync()  # a second sync must not count anything twice
        second = meter.compute()
        with open(f"{out_dir}/rank{rank}.json", "w") as handle:
            json.dump({"local": local, "first": first, "second": second}, handle)
    finally:
        dist.destroy_process_group()


def test_sync_with_a_real_two_process_gloo_group(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    # the meter is made here and pickled into both processes, as a user hands one to
    # mp.spawn: each must get its own copy (a shared state tensor double-counted every batch)
    meter = CalibrationMeter(n_bins=15)
    mp.spawn(
        _sync_worker,
        args=(2, meter, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    probs, labels = _data(n=1001)
    expected = _one_shot(probs, labels)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["local"]["n"] == 400 and results[1]["local"]["n"] == 601
    for result in results:
        _assert_same(result["first"], expected)
        _assert_same(result["second"], expected)
    assert int(meter._state[-1]) == 0  # the parent's meter saw none of the children's rows


def test_pickled_meter_owns_a_copy_of_its_state():
    probs, labels = _data(n=300)
    meter = CalibrationMeter(n_bins=15)
    meter.update(probs[:100], labels[:100])
    buffer = io.BytesIO()
    ForkingPickler(buffer).dump(meter)  # the pickler of torch.multiprocessing
    copy = pickle.loads(buffer.getvalue())
    assert copy.compute() == meter.compute()
    copy.update(probs[100:], labels[100:])
    assert meter.compute()["n"] == 100 and copy.compute()["n"] == 300
    _assert_same(copy.compute(), _one_shot(probs, labels))
    copy._reduced = copy._state * 2  # what a sync over two identical processes leaves
    again = pickle.loads(ForkingPickler.dumps(copy))
    assert again.compute()["n"] == 600
    again.update(probs[:1], labels[:1])
    assert again.compute()["n"] == 301 and copy.compute()["n"] == 600


def test_update_after_sync_goes_back_to_local_state():
    meter = CalibrationMeter()
    probs, labels = _data(n=100)
    meter.update(probs[:50], labels[:50])
    meter._reduced = meter._state * 2  # what a sync over two identical processes leaves
    assert meter.compute()["n"] == 100
    meter.update(probs[50:], labels[50:])
    _assert_same(meter.compute(), _one_shot(probs, labels))
