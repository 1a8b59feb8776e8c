"""Executor strings, and the checks that run before any cluster is reached."""

import pytest
from click.testing import CliRunner

import crossent.study.executors as executors
from crossent.cli import main
from crossent.study import StudyConfigError, expand, parse_config, run_id
from crossent.study.executors import check_reachable, parse_executor
from tests.study.helpers import tiny_raw


@pytest.mark.parametrize(
    ("text", "kind", "address", "workers"),
    [
        ("process:3", "process", None, 3),
        ("dask:local:2", "dask", None, 2),
        ("dask:tcp://10.0.0.1:8786", "dask", "tcp://10.0.0.1:8786", None),
        ("dask:localhost:8786", "dask", "localhost:8786", None),
        ("ray:auto", "ray", "auto", None),
        ("ray:local:4", "ray", None, 4),
        ("ray:ray://head:10001", "ray", "ray://head:10001", None),
    ],
)
def test_executor_strings(text, kind, address, workers):
    spec = parse_executor(text)
    assert (spec.kind, spec.address, spec.workers) == (kind, address, workers)
    assert str(spec) == text
    assert spec.remote == (address is not None)


@pytest.mark.parametrize(
    "text",
    ["process", "process:0", "process:two", "dask", "dask:", "dask:local", "dask:local:0",
     "ray:local:-1", "spark:local:2", ""],
)  # fmt: skip
def test_bad_executor_strings_name_the_forms(text):
    with pytest.raises(ValueError, match=r"Expected `executor` to be process:N, dask:ADDRESS, "):
        parse_executor(text)


def _csv(folder):
    path = folder / "data.csv"
    rows = [f"{i % 3},{i * 0.1:.1f},{(i * 7) % 5}" for i in range(60)]
    path.write_text("label,a,b\n" + "\n".join(rows) + "\n")
    return path


def test_local_files_and_remote_clusters(tmp_path):
    path = _csv(tmp_path)
    remote, local = parse_executor("dask:tcp://scheduler:8786"), parse_executor("ray:local:2")

    def config(name, **data):
        return parse_config(tiny_raw(data={"name": name, **data}))

    check_reachable(config(f"csv:{path}"), local)  # local workers see this machine's files
    check_reachable(config("digits"), remote)  # built on each worker
    with pytest.raises(StudyConfigError, match=r"`data.shared`: 'csv:.*' is read from a file"):
        check_reachable(config(f"csv:{path}"), remote)
    check_reachable(config(f"csv:{path}", shared=True), remote)
    with pytest.raises(StudyConfigError, match="`data.name`: 'data.csv' is a relative path"):
        check_reachable(config("csv:data.csv", shared=True), remote)
    with pytest.raises(StudyConfigError, match="`data.data_dir`: 'cifar' is a relative path"):
        check_reachable(config("cifar10", data_dir="cifar", shared=True), remote)
    with pytest.raises(StudyConfigError, match="`data.shared`: expected true or false"):
        config("digits", shared="yes")


def test_shared_does_not_change_run_ids():
    plain = parse_config(tiny_raw())
    shared = parse_config(tiny_raw(data={"name": "digits", "shared": True}))
    assert [run_id(r) for r in expand(plain)] == [run_id(r) for r in expand(shared)]
    assert shared.to_dict()["data"]["shared"] is True


def _run(*args):
    return CliRunner().invoke(main, ["study", "run", *(str(a) for a in args)])


def test_cli_refuses_a_local_file_for_a_remote_cluster_before_connecting(tmp_path):
    config = tmp_path / "csv.toml"
    config.write_text(f'[data]\nname = "csv:{_csv(tmp_path)}"\n[[losses]]\nloss = "ce"\n')
    db = tmp_path / "runs.db"
    result = _run(config, "--executor", "dask:tcp://127.0.0.1:9", "--db", db, "--no-progress")
    assert result.exit_code == 2
    assert "Error: Invalid study config at `data.shared`" in result.output
    assert not db.exists()


def test_cli_executor_errors(tmp_path, monkeypatch):
    db = tmp_path / "runs.db"
    bad = _run("--preset", "quick", "--executor", "spark:2", "--db", db)
    assert bad.exit_code == 2 and "Expected `executor` to be process:N" in bad.output
    both = _run("--preset", "quick", "--executor", "process:2", "--workers", "2", "--db", db)
    assert both.exit_code == 2 and "--workers or --executor, not both" in both.output
    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", "1s")
    nobody = _run(
        "--preset", "quick", "--executor", "dask:tcp://127.0.0.1:9", "--db", db, "--no-progress"
    )
    assert nobody.exit_code == 2, nobody.output
    lines = [line for line in nobody.output.splitlines() if line.startswith("Error:")]
    assert (
        lines == [lines[0]]
        and "cannot reach the Dask scheduler of dask:tcp://127.0.0.1:9" in lines[0]
    )
