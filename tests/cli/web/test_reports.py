"""The study report and the calibration report in Chromium, at a desktop and a phone width."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from crossent.cli import main
from crossent.study import Store, parse_config, run_study, write_report
from tests.cli.web.pages import check_images_tables_links, check_phone_width
from tests.study.helpers import tiny_raw


@pytest.fixture(scope="module")
def study_report(tmp_path_factory):
    """runs/tiny/report.html of a tiny study (one seed, two noise rates, a q grid: ~1 s)."""
    folder = tmp_path_factory.mktemp("runs")
    raw = tiny_raw(
        study={"name": "tiny", "seeds": [0]},
        losses=[
            {"label": "ce", "loss": "ce"},
            {"label": "gce", "loss": "gce", "grid": {"q": [0.3, 0.7]}},
        ],
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(1) as pool:
            run_study(
                parse_config(raw), folder / "runs.db", executor=pool, workers=1, progress=False
            )
        with Store(folder / "runs.db") as store:
            return write_report(store, "tiny", folder / "tiny")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def calibration_report(request, tmp_path_factory):
    """report.html of ``crossent calibrate FILE --out DIR`` on 400 synthetic predictions."""
    folder = tmp_path_factory.mktemp(f"calibrate-{request.param}")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2 if request.param == "binary" else 4, 400)
    if request.param == "binary":
        logits = 2.5 * (labels - 0.5) + rng.normal(0, 1.5, 400)
    else:
        logits = 3 * np.eye(4)[labels] + rng.normal(0, 1.5, (400, 4))
    np.savez(folder / "preds.npz", logits=logits, labels=labels)
    result = CliRunner().invoke(
        main, ["calibrate", str(folder / "preds.npz"), "--out", str(folder / "out")]
    )
    assert result.exit_code == 0, result.output
    return folder / "out" / "report.html"


def test_study_report_in_the_browser(open_page, study_report):
    page, console = open_page(study_report.as_uri())
    images, tables, links = check_images_tables_links(page)
    assert images == 6 and tables >= 2 and links >= 2  # figures; picks, results; the CSVs
    assert page.locator("h1").inner_text() == "Study tiny"
    assert console.errors == []


def test_study_report_at_phone_width(open_page, study_report):
    check_phone_width(open_page, study_report.as_uri())


def test_calibration_report_in_the_browser(open_page, calibration_report):
    page, console = open_page(calibration_report.as_uri())
    images, tables, links = check_images_tables_links(page)
    binary = "binary" in str(calibration_report)
    assert images == (3 if binary else 2) and tables == (2 if binary else 1) and links == 1
    text = page.locator("table").first.inner_text()
    assert "ECE" in text and "after T =" in text
    assert console.errors == []


def test_calibration_report_at_phone_width(open_page, calibration_report):
    check_phone_width(open_page, calibration_report.as_uri())
