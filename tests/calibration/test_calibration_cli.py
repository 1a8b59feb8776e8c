import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from matplotlib.image import imread
from sklearn.metrics import average_precision_score, precision_recall_curve

from crossent.calibration import (
    TemperatureScaling,
    adaptive_calibration_error,
    expected_calibration_error,
    negative_log_likelihood,
)
from crossent.calibration.io import read_labels, read_predictions
from crossent.calibration.report import f1_optimal_threshold
from crossent.calibration.report import precision_recall_curve as our_pr_curve
from crossent.cli import main

N, K = 300, 4


def _logits(n=N, k=K, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=gen).squeeze(1)
    return 3 * z, labels


def _binary(n=N, seed=1):
    gen = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(n, generator=gen, dtype=torch.float64)
    labels = (torch.rand(n, generator=gen, dtype=torch.float64) < torch.sigmoid(z)).long()
    return torch.sigmoid(2.5 * z), labels


def _run(*args):
    return CliRunner().invoke(main, ["calibrate", *map(str, args)])


def _ok(*args):
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def _fails(*args, contains):
    result = _run(*args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert contains in lines[0], lines[0]
    return lines[0]


def _write_formats(tmp_path, logits, labels):
    probs = torch.softmax(logits, dim=1)
    files = {}
    files["npz"] = tmp_path / "m.npz"
    np.savez(files["npz"], logits=logits.numpy(), labels=labels.numpy())
    files["pt"] = tmp_path / "m.pt"
    torch.save({"probs": probs, "labels": labels}, files["pt"])
    files["pt_pair"] = tmp_path / "pair.pt"
    torch.save((logits.float(), labels), files["pt_pair"])
    files["pt_numpy"] = tmp_path / "numpy.pt"
    torch.save({"logits": logits.numpy(), "labels": labels.numpy()}, files["pt_numpy"])
    files["csv"] = tmp_path / "m.csv"
    header = ",".join([f"prob_{k}" for k in range(K)] + ["label"])
    rows = np.column_stack([probs.numpy(), labels.numpy()])
    np.savetxt(files["csv"], rows, delimiter=",", header=header, comments="", fmt="%.17g")
    files["parquet"] = tmp_path / "m.parquet"
    columns = {f"logit_{k}": logits[:, k].numpy() for k in range(K)}
    pq.write_table(pa.table({**columns, "label": labels.numpy()}), files["parquet"])
    files["parquet_list"] = tmp_path / "list.parquet"
    table = pa.table({"probs": pa.array(probs.tolist()), "target": labels.numpy()})
    pq.write_table(table, files["parquet_list"])
    return files


@pytest.mark.parametrize(
    "fmt", ["npz", "pt", "pt_pair", "pt_numpy", "csv", "parquet", "parquet_list"]
)
def test_every_format_gives_the_library_numbers(tmp_path, fmt):
    logits, labels = _logits()
    path = _write_formats(tmp_path, logits, labels)[fmt]
    flag = ["--logits"] if fmt == "pt_pair" else []  # a bare pair does not name its kind
    out = tmp_path / "out"
    result = _ok(path, *flag, "--bins", 10, "--out", out)
    for name in ("Accuracy", "NLL", "Brier", "ECE", "MCE", "ACE", "temperature T ="):
        assert name in result.output
    report = json.loads((out / "calibration.json").read_text())
    assert report["n"] == N and report["num_classes"] == K and report["n_bins"] == 10
    values = logits.float() if fmt == "pt_pair" else logits
    ece = expected_calibration_error(values, labels, n_bins=10, from_logits=True).item()
    ace = adaptive_calibration_error(values, labels, n_bins=10, from_logits=True).item()
    assert report["before"]["ece"] == pytest.approx(ece, abs=1e-6)
    assert report["before"]["ace"] == pytest.approx(ace, abs=1e-6)
    expected_t = TemperatureScaling().fit(logits, labels).temperature
    assert report["temperature"] == pytest.approx(expected_t, rel=1e-4)
    assert report["after"]["nll"] <= report["before"]["nll"]
    assert report["after"]["accuracy"] == report["before"]["accuracy"]
    assert sorted(report["files"]) == sorted(
        ["calibration.json", "report.html", "reliability_before.png", "reliability_after.png"]
    )
    for name in ("reliability_before.png", "reliability_after.png"):
        pixels = imread(out / name)
        assert pixels.shape[:2] == (600, 480) and pixels[..., :3].std() > 0.1


def test_npy_with_separate_labels_and_probs_flag(tmp_path):
    logits, labels = _logits()
    probs = torch.softmax(logits, dim=1)
    np.save(tmp_path / "p.npy", probs.numpy())
    for name, writer in {
        "y.npy": lambda p: np.save(p, labels.numpy()),
        "y.txt": lambda p: np.savetxt(p, labels.numpy(), fmt="%d"),
        "y.csv": lambda p: np.savetxt(p, labels.numpy(), fmt="%d", header="label", comments=""),
        "y.pt": lambda p: torch.save(labels, p),
    }.items():
        writer(tmp_path / name)
        result = _ok(tmp_path / "p.npy", "--labels", tmp_path / name, "--probs")
        nll = negative_log_likelihood(probs, labels).item()
        assert f"{nll:.4f}" in result.output


def test_flag_overrides_the_file_kind(tmp_path):
    logits, labels = _logits()
    np.savez(tmp_path / "m.npz", probs=logits.numpy(), labels=labels.numpy())
    line = _fails(tmp_path / "m.npz", contains="pass --logits for logits")
    assert "from_logits" not in line  # the CLI's option, not the library's argument
    _ok(tmp_path / "m.npz", "--logits")


def test_binary_predictions_threshold_and_pr_curve(tmp_path):
    probs, labels = _binary()
    path = tmp_path / "b.csv"
    np.savetxt(
        path,
        np.column_stack([probs.numpy(), labels.numpy()]),
        delimiter=",",
        header="p,label",
        comments="",
        fmt="%.17g",
    )
    out = tmp_path / "out"
    result = _ok(path, "--out", out)
    assert "F1-optimal threshold" in result.output
    report = json.loads((out / "calibration.json").read_text())
    assert report["binary"] and report["num_classes"] == 2
    # the threshold maximises F1 on scikit-learn's precision-recall curve
    precision, recall, thresholds = precision_recall_curve(labels.numpy(), probs.numpy())
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    best = int(np.argmax(f1[:-1]))
    assert report["before"]["f1_threshold"] == pytest.approx(thresholds[best], abs=1e-12)
    assert report["before"]["f1"] == pytest.approx(f1[best], abs=1e-12)
    assert report["before"]["average_precision"] == pytest.approx(
        average_precision_score(labels.numpy(), probs.numpy()), abs=1e-12
    )
    assert report["after"]["f1"] == pytest.approx(report["before"]["f1"], abs=1e-12)
    assert "pr_curve.png" in report["files"]
    pixels = imread(out / "pr_curve.png")
    assert pixels.shape[:2] == (420, 480) and pixels[..., :3].std() > 0.1


def test_pr_curve_matches_sklearn_with_ties():
    scores = np.array([0.9, 0.8, 0.8, 0.8, 0.3, 0.3, 0.1])
    labels = np.array([1, 0, 1, 1, 0, 1, 0])
    ours = our_pr_curve(scores, labels)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    np.testing.assert_allclose(ours.precision, precision[:-1][::-1])
    np.testing.assert_allclose(ours.recall, recall[:-1][::-1])
    np.testing.assert_allclose(ours.thresholds, thresholds[::-1])
    assert ours.average_precision == pytest.approx(average_precision_score(labels, scores))
    best = f1_optimal_threshold(ours)
    assert best["threshold"] == 0.3 and best["f1"] == pytest.approx(2 * 4 / 6 * 1 / (4 / 6 + 1))


def test_few_rows_skip_temperature_scaling(tmp_path):
    logits, labels = _logits(n=10)
    np.savez(tmp_path / "m.npz", logits=logits.numpy(), labels=labels.numpy())
    out = tmp_path / "out"
    result = _ok(tmp_path / "m.npz", "--out", out)
    assert "temperature scaling skipped" in result.output and "20 rows" in result.output
    report = json.loads((out / "calibration.json").read_text())
    assert report["temperature"] is None and report["after"] is None
    assert "reliability_after.png" not in report["files"]


def test_malformed_files_give_one_line_errors(tmp_path):
    logits, labels = _logits(n=40)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive")
    _fails(garbage, contains=f"{garbage}: cannot read the file")
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"\x80\x04not a pickle")
    _fails(bad_pt, contains=str(bad_pt))
    text = tmp_path / "text.csv"
    text.write_text("prob_0,prob_1,label\n0.5,0.5,1\n0.2,abc,0\n")
    _fails(text, contains=f"{text}: cannot read the file")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("prob_0,prob_1,label\n0.5,0.5,1\n0.2,0.8\n")
    _fails(ragged, contains=str(ragged))
    header_only = tmp_path / "empty.csv"
    header_only.write_text("prob_0,prob_1,label\n")
    _fails(header_only, contains="no data rows")
    unknown = tmp_path / "m.json"
    unknown.write_text("{}")
    _fails(unknown, contains="unsupported file type '.json'")
    _fails(tmp_path / "missing.npz", contains="no such file")
    no_labels = tmp_path / "p.npy"
    np.save(no_labels, logits.numpy())
    _fails(no_labels, contains="holds no labels: pass --labels")
    short = tmp_path / "short.npy"
    np.save(short, labels[:30].numpy())
    _fails(no_labels, "--labels", short, "--logits", contains="30 labels for 40 predictions")
    float_labels = tmp_path / "fl.npy"
    np.save(float_labels, labels.numpy() + 0.5)
    _fails(no_labels, "--labels", float_labels, contains="whole numbers")
    keys = tmp_path / "keys.npz"
    np.savez(keys, a=logits.numpy(), b=logits.numpy())
    _fails(keys, contains="expected the predictions under one of")
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, logits=logits.numpy(), labels=labels[:5].numpy())
    _fails(mismatch, contains="40 predictions but 5 labels")
    shape = tmp_path / "shape.npz"
    np.savez(shape, logits=logits.numpy()[None], labels=labels.numpy())
    _fails(shape, contains="shape (N, K) or (N,)")


def test_invalid_contents_name_the_file(tmp_path):
    logits, labels = _logits(n=40)
    probs = torch.softmax(logits, dim=1).numpy()
    probs[3, 0] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, probs=probs, labels=labels.numpy())
    _fails(path, contains=f"{path}: Expected `probs` to be finite")
    out_of_range = tmp_path / "range.npz"
    np.savez(out_of_range, logits=logits.numpy(), labels=labels.numpy() + 1)
    _fails(out_of_range, contains="Expected `labels` to be class indices in [0, 3], but got 4")


def test_readers_directly(tmp_path):
    logits, labels = _logits(n=25)
    path = tmp_path / "m.pt"
    torch.save(logits.to(torch.bfloat16), path)
    content = read_predictions(path)
    assert content.values.shape == (25, K) and content.labels is None
    assert content.from_logits is None
    np.savez(tmp_path / "y.npz", labels=labels.numpy())
    assert torch.equal(read_labels(tmp_path / "y.npz"), labels)


def test_help_lists_the_command():
    result = CliRunner().invoke(main, ["calibrate", "--help"])
    assert result.exit_code == 0
    for option in ("--labels", "--logits / --probs", "--bins", "--out"):
        assert option in result.output


def test_unwritable_out_gives_a_one_line_error(tmp_path):
    logits, labels = _logits(n=40)
    path = tmp_path / "m.npz"
    np.savez(path, logits=logits.numpy(), labels=labels.numpy())
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = _fails(path, "--out", blocker / "sub", contains=str(blocker / "sub"))
    assert "cannot write" in line


def test_float_labels_beyond_int64_are_malformed(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, probs=np.full((30, 2), 0.5), labels=np.full(30, 1e30))
    _fails(path, contains="labels must be whole numbers")


def test_binary_run_prints_the_precision_recall_curve_and_stores_it(tmp_path):
    probs, labels = _binary()
    path = tmp_path / "b.npz"
    np.savez(path, probs=probs.numpy(), labels=labels.numpy())
    out = tmp_path / "out"
    result = _ok(path, "--out", out)
    assert "Precision-recall curve" in result.output
    report = json.loads((out / "calibration.json").read_text())
    points = report["pr_curve"]
    assert 2 <= len(points) <= 11
    precision, recall, thresholds = precision_recall_curve(labels.numpy(), probs.numpy())
    for point in points:  # every printed point lies on scikit-learn's curve
        (index,) = np.flatnonzero(thresholds == point["threshold"])
        assert point["precision"] == pytest.approx(precision[index], abs=1e-12)
        assert point["recall"] == pytest.approx(recall[index], abs=1e-12)
        assert f"{point['threshold']:.4f}" in result.output
    assert points[-1]["recall"] == 1.0
    assert [p["recall"] for p in points] == sorted(p["recall"] for p in points)


def test_multiclass_report_has_no_pr_curve(tmp_path):
    logits, labels = _logits()
    path = tmp_path / "m.npz"
    np.savez(path, logits=logits.numpy(), labels=labels.numpy())
    result = _ok(path, "--out", tmp_path / "out")
    assert "Precision-recall curve" not in result.output
    assert "pr_curve" not in json.loads((tmp_path / "out" / "calibration.json").read_text())


def test_help_documents_the_file_layouts():
    result = CliRunner().invoke(main, ["calibrate", "--help"])
    for word in ("logits", "probs", "labels", "header", "column", ".txt"):
        assert word in result.output


def test_bins_are_bounded(tmp_path):
    logits, labels = _logits(n=40)
    path = tmp_path / "m.npz"
    np.savez(path, logits=logits.numpy(), labels=labels.numpy())
    # 10**9 bins asked for 24 GB (the kernel killed the process) before the bound
    result = _run(path, "--bins", 1_000_000_000)
    assert result.exit_code == 2
    assert "'--bins': 1000000000 is not in the range 1<=x<=10000" in result.output
    _ok(path, "--bins", 10_000)
    assert "at most 10000" in " ".join(_ok("--help").output.split())


def test_excel_csv_with_a_byte_order_mark(tmp_path):
    # Excel's "CSV UTF-8" starts with a BOM; with the label column first it stuck to "label"
    logits, labels = _logits(n=60)
    probs = torch.softmax(logits, dim=1)
    rows = [",".join(["label", *(f"prob_{k}" for k in range(K))])]
    for p, y in zip(probs, labels, strict=True):
        rows.append(",".join([str(int(y)), *(repr(float(v)) for v in p)]))
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    content = read_predictions(path)
    assert torch.equal(content.labels, labels) and content.from_logits is False
    torch.testing.assert_close(content.values, probs, rtol=0, atol=1e-15)
    _ok(path)
    for name, text in {"y.csv": "label\r\n", "y.txt": ""}.items():
        labels_path = tmp_path / name
        body = "\r\n".join(str(int(y)) for y in labels) + "\r\n"
        labels_path.write_bytes(b"\xef\xbb\xbf" + (text + body).encode())
        assert torch.equal(read_labels(labels_path), labels), name


def test_json_output_is_the_report(tmp_path):
    logits, labels = _logits()
    path = tmp_path / "m.npz"
    np.savez(path, logits=logits.numpy(), labels=labels.numpy())
    out = tmp_path / "out"
    result = _ok(path, "--bins", 10, "--json", "--out", out)
    report = json.loads(result.stdout)  # stdout holds the JSON alone
    assert report == json.loads((out / "calibration.json").read_text())
    assert f"to {out}" in result.stderr and "Accuracy" not in result.output
    ece = expected_calibration_error(logits, labels, n_bins=10, from_logits=True).item()
    assert report["before"]["ece"] == pytest.approx(ece, abs=1e-12)
    assert report["n"] == N and report["predictions"] == str(path)
    scaler = TemperatureScaling().fit(logits, labels)
    assert report["temperature"] == pytest.approx(scaler.temperature, rel=1e-9)
    plain = json.loads(_ok(path, "--bins", 10, "--json").stdout)
    assert plain == {k: v for k, v in report.items() if k != "files"}


def test_pred_key_and_label_key_for_other_names(tmp_path):
    logits, labels = _logits(n=100)
    nll = negative_log_likelihood(logits, labels, from_logits=True).item()
    path = tmp_path / "other.npz"
    np.savez(path, output=logits.numpy(), gt=labels.numpy())
    _fails(path, contains="found ['gt', 'output'] (name the array with pred_key, --pred-key")
    result = _ok(path, "--pred-key", "output", "--label-key", "gt", "--logits", "--json")
    assert json.loads(result.stdout)["before"]["nll"] == pytest.approx(nll, abs=1e-12)
    # a key naming the kind sets it, as the default names do
    torch.save({"logits_model_a": logits, "truth": labels}, tmp_path / "m.pt")
    report = json.loads(
        _ok(
            tmp_path / "m.pt", "--pred-key", "logits_model_a", "--label-key", "TRUTH", "--json"
        ).stdout
    )
    assert report["input"] == "logits" and report["before"]["nll"] == pytest.approx(nll)
    _fails(
        path,
        "--pred-key",
        "scores",
        "--label-key",
        "gt",
        contains="no array or column named 'scores' (pred_key); found ['output', 'gt']",
    )
    _fails(path, "--pred-key", "output", contains="holds no labels: pass --labels FILE, or --label")
    # --label-key reads the --labels file
    np.savez(tmp_path / "y.npz", gt=labels.numpy(), other=labels.numpy() + 1)
    result = _ok(
        path,
        "--pred-key",
        "output",
        "--labels",
        tmp_path / "y.npz",
        "--label-key",
        "gt",
        "--logits",
        "--json",
    )
    assert json.loads(result.stdout)["before"]["nll"] == pytest.approx(nll, abs=1e-12)


def test_pred_key_and_label_key_in_tables(tmp_path):
    probs, labels = _binary(n=120)
    path = tmp_path / "b.csv"
    rows = np.column_stack([labels.numpy(), probs.numpy(), 1 - probs.numpy()])
    np.savetxt(path, rows, delimiter=",", header="truth,p_yes,p_no", comments="", fmt="%.17g")
    content = read_predictions(path, pred_key="p_yes", label_key="truth")
    assert torch.equal(content.labels, labels) and content.values.shape == (120,)
    brier = json.loads(_ok(path, "--pred-key", "p_yes", "--label-key", "truth", "--json").stdout)
    assert brier["binary"] and brier["before"]["brier"] == pytest.approx(
        ((probs - labels) ** 2).mean().item(), abs=1e-12
    )
    logits, labels = _logits(n=50)
    table = pa.table({"out": pa.array(logits.tolist()), "gt": labels.numpy()})
    pq.write_table(table, tmp_path / "l.parquet")
    content = read_predictions(tmp_path / "l.parquet", pred_key="out", label_key="gt")
    assert torch.equal(content.values, logits) and torch.equal(content.labels, labels)
    assert torch.equal(read_labels(tmp_path / "l.parquet", key="gt"), labels)
