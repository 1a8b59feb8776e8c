import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

import crossent.study.train as train_module
from crossent.study import (
    Store,
    StudyConfigError,
    execute_run,
    expand,
    parse_config,
    run_id,
    run_study,
)
from tests.study.helpers import tiny_raw


def _run(config, db, **kwargs):
    with ThreadPoolExecutor(2) as pool:
        return run_study(config, db, executor=pool, workers=2, progress=False, **kwargs)


def test_runs_every_run_and_skips_finished_ones(tiny, tmp_path):
    db = tmp_path / "runs.db"
    summary = _run(tiny, db)
    assert (summary.total, summary.finished, summary.ran, summary.failed) == (12, 12, 12, 0)
    with Store(db) as store:
        runs = store.runs("tiny")
        assert [r["id"] for r in runs] == [run_id(c) for c in expand(tiny)]
        assert all(r["attempts"] == 1 and r["metrics"]["accuracy"] > 0 for r in runs)
        assert all(r["environment"]["crossent"] for r in runs)
        first = {r["id"]: r["finished_at"] for r in runs}
    again = _run(tiny, db)
    assert (again.ran, again.skipped, again.finished) == (0, 12, 12)
    with Store(db) as store:
        assert {r["id"]: r["finished_at"] for r in store.runs("tiny")} == first


def test_a_crashing_run_is_stored_as_failed_and_retried_on_request(tiny, tmp_path, monkeypatch):
    real = train_module.make_loss

    class Boom(Exception):
        pass

    def make_loss(loss, labels, k):
        fn = real(loss, labels, k)
        if loss["grid"].get("q") != 0.3:
            return fn

        def crash(logits, target):
            raise Boom("loss exploded")

        return crash

    monkeypatch.setattr(train_module, "make_loss", make_loss)
    db = tmp_path / "runs.db"
    summary = _run(tiny, db)
    assert summary.failed == 4 and summary.finished == 8
    with Store(db) as store:
        failed = store.runs("tiny", "failed")
        assert all(
            "Boom: loss exploded" in r["error"] and "Traceback" in r["error"] for r in failed
        )
        assert all(r["metrics"] is None for r in failed)
    again = _run(tiny, db)  # without --retry-failed: kept, not run
    assert again.ran == 0 and again.failed == 4
    monkeypatch.setattr(train_module, "make_loss", real)
    retried = _run(tiny, db, retry_failed=True)
    assert retried.ran == 4 and retried.finished == 12 and retried.failed == 0
    with Store(db) as store:
        attempts = {r["id"]: r["attempts"] for r in store.runs("tiny")}
    assert sorted(attempts.values()) == [1] * 8 + [2] * 4


def test_execute_run_returns_plain_picklable_results(tiny):
    ok = execute_run(expand(tiny)[0], threads=1)
    assert ok["status"] == "finished" and isinstance(ok["arrays"], bytes)
    assert pickle.loads(pickle.dumps(ok))["metrics"] == ok["metrics"]
    bad = execute_run(expand(parse_config(tiny_raw(training={"epochs": 3, "lr": 1e30})))[0])
    assert bad["status"] == "failed" and "FloatingPointError" in bad["error"]
    assert bad["duration_s"] >= 0 and bad["environment"]["threads"] == 1


def test_bad_data_or_model_is_rejected_before_any_run(tmp_path, monkeypatch):
    cnn = parse_config(tiny_raw(model={"name": "cnn"}))
    with pytest.raises(
        StudyConfigError, match="`model`: Expected `model.name` to be 'linear' or 'mlp'"
    ):
        _run(cnn, tmp_path / "runs.db")
    weighted = parse_config(
        tiny_raw(losses=[{"loss": "ce"}, {"loss": "nce", "class_weights": {"method": "inverse"}}])
    )
    make_loss = train_module.make_loss

    def no_weighted_nce(loss, labels, num_classes):
        if loss["name"] == "nce" and loss["class_weights"]:
            raise ValueError("Unknown argument `weight` for loss 'nce'")
        return make_loss(loss, labels, num_classes)

    monkeypatch.setattr(train_module, "make_loss", no_weighted_nce)
    with pytest.raises(StudyConfigError, match=r"`losses\[1\]`: Unknown argument `weight`"):
        _run(weighted, tmp_path / "runs.db")
    missing = parse_config(tiny_raw(data={"name": "csv:/no/such/file.csv"}))
    with pytest.raises(StudyConfigError, match="`data`"):
        _run(missing, tmp_path / "runs.db")
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize("rates", [[0.0, 0.3], [0.3]])
def test_a_mapping_outside_the_classes_is_rejected_before_any_run(tmp_path, rates):
    # digits has 10 classes: class 11 does not exist, whether or not the first run is clean
    noise = {"kind": "asymmetric", "rates": rates, "mapping": {"0": 11}}
    config = parse_config(tiny_raw(noise=noise))
    with pytest.raises(StudyConfigError, match=r"`noise.mapping`: Expected `mapping` to map"):
        _run(config, tmp_path / "runs.db")
    assert not (tmp_path / "runs.db").exists()


def test_workers_must_be_positive(tiny, tmp_path):
    with pytest.raises(ValueError, match="Expected `workers` >= 1"):
        run_study(tiny, tmp_path / "x.db", workers=0)


def test_an_interrupted_runner_gives_its_claims_back(tiny, tmp_path, monkeypatch):
    real = train_module._train

    def train(config, data, model, loss_fn):
        if config["loss"]["label"] == "gce":
            raise KeyboardInterrupt  # Ctrl-C while a run trains
        return real(config, data, model, loss_fn)

    monkeypatch.setattr(train_module, "_train", train)
    db = tmp_path / "runs.db"
    with pytest.raises(KeyboardInterrupt), ThreadPoolExecutor(1) as pool:
        run_study(tiny, db, executor=pool, workers=1, progress=False)
    with Store(db) as store:
        runs = store.runs("tiny")
    assert {r["status"] for r in runs} == {"finished", "pending"}
    assert all(r["attempts"] == 0 for r in runs if r["status"] == "pending")
    assert [r["config"]["loss"]["label"] for r in runs if r["status"] == "finished"] == ["ce"]
