from concurrent.futures import ThreadPoolExecutor

import pytest

from crossent.study import Store, StudyConfigError, parse_config, run_study, write_report
from crossent.study.report_tagging import direction
from crossent.study.results import load_results, summarize
from tests.study.helpers import tiny_ner_raw, tiny_raw


def _run(config, db):
    with ThreadPoolExecutor(2) as pool:
        return run_study(config, db, executor=pool, workers=2, progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny tagging study, run once and reported."""
    folder = tmp_path_factory.mktemp("ner")
    db = folder / "runs.db"
    summary = _run(parse_config(tiny_ner_raw()), db)
    with Store(db) as store:
        report = write_report(store, "ner-tiny", folder / "report")
    return summary, db, report


def test_a_tagging_study_runs_and_stores_token_and_entity_metrics(finished):
    summary, db, _ = finished
    assert (summary.total, summary.finished, summary.failed) == (16, 16, 0)
    with Store(db) as store:
        runs = store.runs("ner-tiny")
        noisy = next(r for r in runs if r["config"]["noise"]["rate"] == 0.6)
        arrays = store.arrays(noisy["id"])
    m = noisy["metrics"]
    for key in (
        "accuracy",
        "entity_f1",
        "entity_precision",
        "entity_recall",
        "ece",
        "mce",
        "ace",
        "val_ece",
        "val_clean_ece",
        "val_mce",
        "val_clean_mce",
        "val_entity_f1",
        "val_clean_entity_f1",
        "ece_ts",
    ):
        assert key in m, key
    assert set(m["entity_per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    # flipped: exactly 60% of the training tokens; memorised + corrected never exceed it
    assert m["flipped"] == round(0.6 * m["train_size"])
    assert m["memorised"] + m["corrected"] <= m["flipped"]
    assert arrays["test_probs"].shape[1] == 9 and arrays["test_labels"].min() >= 0
    assert set(noisy["history"]) >= {"train_loss", "test_entity_f1", "test_ece"}
    sgce = next(r for r in runs if r["config"]["loss"]["label"] == "sgce")
    assert sgce["metrics"]["min_train_loss"] > 0
    assert len(sgce["history"]["train_loss_excess"]) == 2


def test_the_tagging_report_draws_its_figures_and_states_the_direction(finished):
    _, db, report = finished
    figures = {p.name for p in (report.parent / "figures").iterdir()}
    assert figures >= {
        "entity_f1_accuracy.png",
        "q_heatmap.png",
        "calibration.png",
        "smoothing_calibration.png",
        "loss_curves.png",
        "reliability.png",
    }
    page = report.read_text()
    assert "best by entity F1" in page and "Entity F1 per type" in page
    assert "Does this study show the direction of the original experiment?" in page
    with Store(db) as store:
        results = load_results(store, "ner-tiny")
    checks = direction(results, summarize(results.rows))
    assert [c["kind"] for c in checks] == ["symmetric"]
    assert [c["setting"][1] for c in checks[0]["f1"]] == [0.6]
    verdict = "yes: both findings hold" if checks[0]["shown"] else "only in part"
    assert verdict in page


def _refused(raw, db, path, *parts):
    config = parse_config(raw)
    with pytest.raises(StudyConfigError) as info:
        _run(config, db)
    assert info.value.path == path and "\n" not in str(info.value)
    for part in parts:
        assert part in str(info.value)
    with Store(db) as store:
        assert config.name not in [s["name"] for s in store.studies()]


def test_bad_tagging_studies_are_refused_before_anything_is_stored(finished, tmp_path):
    _, db, _ = finished
    span_on_digits = tiny_raw(
        losses=[{"loss": "ce", "params": {"label_smoothing": 0.1, "smoothing": "span"}}]
    )
    span_on_digits["study"] = {"name": "bad-span"}
    _refused(span_on_digits, db, "losses[0]", "smoothing='span' needs a sequence of tags")
    long = tiny_ner_raw(study={"name": "bad-length"})
    long["model"] = {"name": "transformer", "embedding_dim": 8, "heads": 2, "max_length": 4}
    _refused(long, db, "model", "at most 4 tokens", "data option max_length")
    bad_file = tmp_path / "bad.txt"
    bad_file.write_text("EU NNP B-NP B-ORG\n\nrejects VBZ\n", encoding="utf-8")
    malformed = tiny_ner_raw(study={"name": "bad-file"}, data={"name": f"conll:{bad_file}"})
    _refused(malformed, db, "data", "line 3 of", "'rejects VBZ'")
    tagger_on_digits = tiny_raw(study={"name": "bad-model"}, model={"name": "bilstm"})
    _refused(tagger_on_digits, db, "data", "Expected token data")
    span_noise_on_digits = tiny_raw(
        study={"name": "bad-noise"}, noise={"kind": "span-type", "rates": [0.2]}
    )
    _refused(span_noise_on_digits, db, "noise", "kind")
    resampled = tiny_ner_raw(
        study={"name": "bad-sampler"}, losses=[{"loss": "ce", "sampler": "class_balanced"}]
    )
    _refused(resampled, db, "losses[0]", "Expected sampler 'none' for a tagging study")
    # the finished study is untouched
    with Store(db) as store:
        assert len(store.runs("ner-tiny", status="finished")) == 16


def test_span_smoothing_out_of_range_is_a_config_error():
    raw = tiny_ner_raw(
        losses=[{"loss": "sgce", "params": {"label_smoothing": 0.7, "smoothing": "span"}}]
    )
    with pytest.raises(StudyConfigError) as info:
        parse_config(raw)
    assert info.value.path == "losses[0].params.label_smoothing"


def _rows(table):
    """Finished-run rows from {(variant, loss name, rate): [(f1, ece) per seed]}."""
    rows = []
    for (variant, name, rate), seeds in table.items():
        for seed, (f1, ece) in enumerate(seeds):
            rows.append(
                {
                    "setting": ("none" if rate == 0 else "symmetric", rate, 1.0),
                    "variant": variant,
                    "label": variant.split()[0],
                    "loss": {
                        "name": name,
                        "params": {"q": 0.7} if name != "ce" else {},
                        "grid": {},
                    },
                    "seed": seed,
                    "metrics": {"entity_f1": f1, "ece": ece},
                }
            )
    return rows


def test_direction_checks_margins_against_the_seed_spread_and_the_ece_trend():
    from crossent.study.results import Results

    table = {
        ("ce", "ce", 0.0): [(0.90, 0.01), (0.92, 0.01)],
        ("ce", "ce", 0.4): [(0.50, 0.10), (0.52, 0.12)],
        ("ce", "ce", 0.8): [(0.20, 0.30), (0.22, 0.32)],
        ("gce", "gce", 0.0): [(0.91, 0.01), (0.91, 0.01)],
        ("gce", "gce", 0.4): [(0.70, 0.02), (0.72, 0.02)],  # ahead by 0.2 > spread
        ("gce", "gce", 0.8): [(0.20, 0.05), (0.30, 0.05)],  # ahead by 0.04 < spread 0.07
        ("sgce", "sgce", 0.4): [(0.60, 0.02), (0.62, 0.02)],
    }
    rows = _rows(table)
    results = Results("s", {"model": {"name": "bilstm"}}, rows)
    (check,) = direction(results, summarize(rows))
    assert check["kind"] == "symmetric"
    first, second = check["f1"]
    assert (first["best"], first["ahead"]) == ("gce", True)
    assert first["margin"] == pytest.approx(0.2)
    assert (first["sgce"]["best"], first["sgce"]["ahead"]) == ("sgce", True)
    assert (second["ahead"], second["sgce"]) == (False, None)
    assert check["ece"]["rising"] and check["ece"]["peak"] == 0.8
    assert check["shown"] is False  # n = 0.8 is within the spread
