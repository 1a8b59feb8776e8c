"""`crossent calc`: values, gradients and reference levels against hand-computed numbers."""

import json
import math

import pytest
from click.testing import CliRunner

import crossent
from crossent.cli import main
from crossent.cli.calc import DEFAULT_BINARY, DEFAULT_MULTICLASS, evaluate_losses, probs_to_logits


def _run(*args):
    result = CliRunner().invoke(main, ["calc", *args])
    return result


def _json(*args):
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    return report, {row["spec"]: row for row in report["losses"]}


def test_cross_entropy_by_hand():
    report, rows = _json("--probs", "0.7,0.2,0.1", "--label", "0", "--losses", "ce")
    ce = rows["ce"]
    assert ce["value"] == pytest.approx(-math.log(0.7)) and round(ce["value"], 3) == 0.357
    # softmax minus one-hot
    assert ce["gradient"] == pytest.approx([-0.3, 0.2, 0.1], abs=1e-12)
    assert ce["fd_max_abs_diff"] < 1e-7
    assert report["chance_ln_k"] == pytest.approx(math.log(3))
    assert ce["chance"] == pytest.approx(math.log(3))
    assert ce["value_minus_chance"] == pytest.approx(-math.log(0.7) - math.log(3))
    assert ce["min_achievable"] == pytest.approx(0.0, abs=1e-12)
    assert ce["excess"] == pytest.approx(ce["value"])
    assert report["probs"] == pytest.approx([0.7, 0.2, 0.1])


@pytest.mark.parametrize(
    ("p_t", "ce", "focal"), [(0.9, 0.105, 0.00105), (0.5, 0.693, 0.173), (0.1, 2.303, 1.865)]
)
def test_focal_versus_ce_worked_numbers(p_t, ce, focal):
    _, rows = _json(
        "--probs", f"{p_t},{1 - p_t}", "--label", "0", "--losses", "ce,focal", "--gamma", "2"
    )
    assert rows["ce"]["value"] == pytest.approx(ce, abs=5e-4)
    assert rows["focal"]["value"] == pytest.approx(focal, rel=5e-3)


def test_shared_options_reach_the_losses_that_take_them():
    _, rows = _json(
        "--probs", "0.7,0.2,0.1", "--label", "0", "--losses", "gce,mae,focal(gamma=0)",
        "--q", "0.7", "--gamma", "2",
    )  # fmt: skip
    assert rows["gce"]["value"] == pytest.approx((1 - 0.7**0.7) / 0.7)  # 0.3156
    assert rows["mae"]["value"] == pytest.approx(2 * (1 - 0.7))
    # the spec's own gamma wins over --gamma: focal(gamma=0) is cross-entropy
    assert rows["focal(gamma=0)"]["value"] == pytest.approx(-math.log(0.7))


@pytest.mark.parametrize("smoothing", ["uniform", "others"])
def test_minimum_under_smoothing_is_the_target_entropy(smoothing):
    spec = f"ce(smoothing='{smoothing}')"
    _, rows = _json(
        "--logits", "2,0.5,-1,0", "--label", "2", "--losses", spec, "--smoothing", "0.1"
    )
    want = crossent.min_achievable_loss(4, 0.1, smoothing)
    row = rows[spec]
    assert row["min_achievable"] == pytest.approx(want, abs=1e-6)
    assert row["excess"] == pytest.approx(row["value"] - want)
    assert row["excess"] > 0


def test_binary_by_hand():
    report, rows = _json("--p", "0.8", "--y", "1", "--losses", "bce")
    bce = rows["bce"]
    assert bce["value"] == pytest.approx(-math.log(0.8))
    assert bce["gradient"] == pytest.approx([0.8 - 1])  # sigmoid(z) - y
    assert bce["chance"] == pytest.approx(math.log(2))
    assert report["kind"] == "binary" and report["chance_ln_k"] == pytest.approx(math.log(2))


def test_default_losses_and_their_gradients():
    report, rows = _json("--probs", "0.6,0.3,0.1", "--label", "1")
    assert list(rows) == list(DEFAULT_MULTICLASS)
    for row in report["losses"]:
        assert row["fd_max_abs_diff"] < 1e-6, row["spec"]
        assert row["min_achievable"] <= row["value"] + 1e-12
    _, rows = _json("--p", "0.3", "--y", "0")
    assert list(rows) == list(DEFAULT_BINARY)
    assert all(row["fd_max_abs_diff"] < 1e-6 for row in rows.values())


def test_table_output():
    result = _run("--probs", "0.7,0.2,0.1", "--label", "0", "--losses", "ce,focal(gamma=2)")
    assert result.exit_code == 0, result.output
    assert "0.357" in result.output and "focal(gamma=2)" in result.output
    assert "1.099" in result.output  # ln 3
    assert "[-0.300, +0.200, +0.100]" in result.output  # softmax minus one-hot
    header = next(line for line in result.output.splitlines() if "value - chance" in line)
    assert "- chance" not in header.replace("value - chance", "")
    assert "-0.742" in result.output  # value - chance = 0.357 - ln 3


def test_table_shows_the_articles_numbers():
    # CE = 0.105 / 2.303 and focal(gamma=2) = 0.00105 / 1.865 at p_t = 0.9 / 0.1
    for p_t, numbers in ((0.9, ("0.105", "0.00105")), (0.1, ("2.303", "1.865"))):
        result = _run("--probs", f"{p_t},{1 - p_t}", "--label", "0", "--losses", "ce,focal")
        assert result.exit_code == 0, result.output
        assert all(n in result.output for n in numbers), result.output


def test_evaluate_losses_directly():
    rows = evaluate_losses(probs_to_logits([0.5, 0.25, 0.25]), 0, ["ce", "nll"])
    assert rows[0]["value"] == pytest.approx(math.log(2))
    assert rows[1]["value"] == pytest.approx(rows[0]["value"])  # nll of log_softmax
    assert rows[1]["gradient"] == pytest.approx(rows[0]["gradient"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--probs", "0.5,0.6", "--label", "0"], "summing to 1"),
        (["--probs", "0.5,0.5,0", "--label", "0"], "probabilities > 0"),
        (["--probs", "0.5,a", "--label", "0"], "comma-separated numbers"),
        (["--probs", "0.7,0.3"], "--label is required with --probs (the true class, 0 to 1)"),
        (["--logits", "1,2,3"], "--label is required with --logits"),
        (["--logits", "1,2", "--label", "2"], "expected a class in [0, 2)"),
        (["--probs", "0.7,0.3", "--label", "0", "--p", "0.5"], "exactly one of"),
        ([], "exactly one of"),
        (["--p", "1.0", "--y", "1"], "probability in (0, 1)"),
        (["--p", "0.5"], "target in [0, 1]"),
        (["--probs", "0.7,0.3", "--label", "0", "--losses", "dice"], "segmentation"),
        (["--probs", "0.7,0.3", "--label", "0", "--losses", "bce"], "one logit"),
        (["--p", "0.5", "--y", "1", "--losses", "ce"], "sigmoid_focal"),
        (["--probs", "0.7,0.3", "--label", "0", "--losses", "hinge"], "Unknown loss 'hinge'"),
        (["--probs", "0.7,0.3", "--label", "0", "--losses", "gce(q=2)"], "`q` in [0, 1]"),
    ],
)
def test_bad_options_fail_with_a_message(args, message):
    result = _run(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_calc_shows_span_smoothing_between_two_neighbours():
    from crossent.core.span import span_entropies

    rows = evaluate_losses(
        probs_to_logits([0.6, 0.3, 0.1]),
        1,
        ["ce", "gce(q=0.7)"],
        shared={"label_smoothing": 0.1},
        neighbours=(0, 2),
    )
    ce = rows[0]
    # the token's target: 0.9 on its tag, 0.05 on each neighbour's tag (two differing)
    want = -(0.05 * math.log(0.6) + 0.9 * math.log(0.3) + 0.05 * math.log(0.1))
    assert ce["value"] == pytest.approx(want, rel=1e-12)
    assert ce["gradient"] == pytest.approx([0.6 - 0.05, 0.3 - 0.9, 0.1 - 0.05], abs=1e-12)
    assert ce["min_achievable"] == pytest.approx(span_entropies(3, 0.1)[2], abs=1e-6)
    assert rows[1]["fd_max_abs_diff"] < 1e-7
    result = CliRunner().invoke(
        main, ["calc", "--probs", "0.6,0.3,0.1", "--label", "1", "--smoothing", "0.1",
               "--neighbours", "0,-", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["neighbours"] == [0, None]
    bad = CliRunner().invoke(
        main, ["calc", "--probs", "0.6,0.4", "--label", "1", "--neighbours", "x"]
    )
    assert bad.exit_code == 2 and "--neighbours" in bad.output
