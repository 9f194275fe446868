"""Secrets stay out of MLflow and the terminal, in-process on a real sqlite store: secret-looking config keys
and URI credentials are masked in params, tags, the `.hydra/` artifact, `compare --command` and printed lines,
while the run dir keeps what the user typed. And `sweeplab ui --host` warns once before it exposes the runs."""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mlflow_server import free_port
from sweeplab.cli import ui
from sweeplab.core.errors import UserError
from sweeplab.core.masking import MaskingFilter, masked, masked_override, masked_text
from sweeplab.core.vocabulary import FINISHED, OVERRIDES_TAG, RUN_DIR_TAG
from sweeplab.runs.run_table import reproduce_command
from sweeplab.tracking import session, sweep
from sweeplab.tracking.handle import RunSpec, SweepSpec
from sweeplab.tracking.store import check_reachable

SECRET = "hunter2"
OVERRIDES = ["optimizer.lr=0.01", f"+db.password={SECRET}", f"+API_Token={SECRET} x",
             f"tracking.uri=http://alice:{SECRET}@tracking.example:5000"]


def test_secret_keys_and_uri_credentials_are_masked_and_nothing_else() -> None:
    assert masked_text(f"http://alice:{SECRET}@host:5000/x") == "http://***@host:5000/x"
    assert masked_text(f"lr=0.1,db.password={SECRET},seed=1") == "lr=0.1,db.password=***,seed=1"  # override_dirname
    assert masked_text(f"https://host/?api_key={SECRET}&page=2") == "https://host/?api_key=***&page=2"
    assert masked_override(f"+DB.Secret_Key={SECRET} with spaces") == "+DB.Secret_Key=***"
    config = {"optimizer": {"lr": 0.01}, "credentials": {"secret": SECRET, "user": "alice"}, "api_key": 7,
              "tracking": {"uri": f"http://alice:{SECRET}@h", "token_file": None}, "tags": [f"token={SECRET}"]}
    assert masked(config) == {"optimizer": {"lr": 0.01}, "credentials": {"secret": "***", "user": "alice"},
                              "api_key": "***", "tracking": {"uri": "http://***@h", "token_file": "***"},
                              "tags": ["token=***"]}
    assert masked_text("sqlite:////home/me/mlflow.db model=cnn") == "sqlite:////home/me/mlflow.db model=cnn"


def hydra_dir(run_dir: Path) -> Path:
    """What Hydra writes in a run dir: the config, its own config (overrides, override_dirname) and overrides."""
    folder = run_dir / ".hydra"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"db": {"password": SECRET}, "optimizer": {"lr": 0.01}}))
    (folder / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": OVERRIDES}, "job": {
        "override_dirname": f"+db.password={SECRET},optimizer.lr=0.01"}}}))
    (folder / "overrides.yaml").write_text(yaml.safe_dump(OVERRIDES))
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for this file's runs (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('secrets') / 'mlflow.db'}"


def test_a_run_sends_mlflow_no_secret_and_its_run_dir_keeps_them(store: str, tmp_path: Path) -> None:
    uri = store
    run_dir = tmp_path / "run"
    typed = {path.name: path.read_text() for path in hydra_dir(run_dir).iterdir()}
    config = {"db": {"password": SECRET}, "dataset": {"api_key": SECRET, "name": "digits"},
              "tracking": {"uri": f"http://alice:{SECRET}@tracking.example:5000"}, "optimizer": {"lr": 0.01}}
    spec = RunSpec(uri, "secrets", None, str(run_dir), config, {OVERRIDES_TAG: shlex.join(OVERRIDES),
                   RUN_DIR_TAG: str(run_dir)}, resume=False)
    run_id = session.start_run(str(run_dir), spec)
    session.set_tag(str(run_dir), "note", f"pushed to https://bob:{SECRET}@git.example")
    session.end_run(str(run_dir), FINISHED, f"UserError: tracking server http://alice:{SECRET}@h is unreachable")

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["db.password"] == "***" and run.data.params["dataset.api_key"] == "***"
    assert run.data.params["tracking.uri"] == "http://***@tracking.example:5000"
    assert run.data.params["optimizer.lr"] == "0.01" and run.data.params["dataset.name"] == "digits"
    assert shlex.split(run.data.tags[OVERRIDES_TAG]) == [
        "optimizer.lr=0.01", "+db.password=***", "+API_Token=***", "tracking.uri=http://***@tracking.example:5000"]
    assert run.data.tags["note"] == "pushed to https://***@git.example"
    assert SECRET not in str(run.data.tags) + str(run.data.params) + run.info.run_name
    uploaded = Path(client.download_artifacts(run_id, ".hydra", str(tmp_path / "download")))
    assert sorted(path.name for path in uploaded.iterdir()) == sorted(typed)
    assert not [name for name in typed if SECRET in (uploaded / name).read_text()]
    assert yaml.safe_load((uploaded / "config.yaml").read_text()) == {"db": {"password": "***"},
                                                                     "optimizer": {"lr": 0.01}}
    assert {path.name: path.read_text() for path in (run_dir / ".hydra").iterdir()} == typed, "kept as typed"
    command = reproduce_command(client, run_id)  # what `sweeplab compare --command` prints
    assert "'+db.password=***'" in command and SECRET not in command


def test_a_sweeps_parent_run_gets_no_secret(store: str, tmp_path: Path) -> None:
    spec = SweepSpec(store, "secrets", str(tmp_path / "sweep"),
                     {OVERRIDES_TAG: shlex.join(OVERRIDES)})
    parent_id = sweep.start_sweep(spec)
    tags = MlflowClient(spec.uri).get_run(parent_id).data.tags
    assert "+db.password=***" in tags[OVERRIDES_TAG] and SECRET not in tags[OVERRIDES_TAG]


def test_an_unreachable_servers_line_does_not_show_its_credentials() -> None:
    with pytest.raises(UserError) as raised:
        check_reachable(f"http://alice:{SECRET}@127.0.0.1:{free_port()}")
    assert str(raised.value).startswith("tracking server http://***@127.0.0.1:") and SECRET not in str(raised.value)


def ui_args(tmp_path: Path, *host: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ui.add_parser(parser.add_subparsers())
    return parser.parse_args(["ui", "--uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(free_port()), *host])


def test_ui_on_another_host_warns_once_of_the_risk(tmp_path: Path, monkeypatch, capsys) -> None:
    started = []
    monkeypatch.setattr(ui.os, "execv", lambda path, command: started.append(command))  # not the real UI
    args = ui_args(tmp_path, "--host", "0.0.0.0")
    ui.run(args)
    (command,) = started
    assert command[command.index("--host") + 1] == "0.0.0.0"
    (warning,) = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: the MLflow UI listens on 0.0.0.0:{args.port}: anyone who can reach that "
                              "port can read and delete every run (MLflow has no authentication by default)")
    assert ui.exposure_warning("10.0.0.5", 5000) and ui.exposure_warning("::", 5000)
    assert not any(ui.exposure_warning(host, 5000) for host in ("127.0.0.1", "localhost", "::1", "127.0.1.1"))


def test_ui_stays_on_this_machine_by_default(tmp_path: Path, monkeypatch, capsys) -> None:
    started = []
    monkeypatch.setattr(ui.os, "execv", lambda path, command: started.append(command))
    ui.run(ui_args(tmp_path))
    (command,) = started
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert capsys.readouterr().err == ""


def test_log_lines_go_out_masked_through_the_handlers_train_yaml_configures(tmp_path: Path) -> None:
    """Hydra's launcher logs each job's overrides; train.log and the terminal get them masked."""
    hydra = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "train.yaml").read_text())["hydra"]
    for config, handlers in ((hydra["hydra_logging"], ["console"]), (hydra["job_logging"], ["console", "file"])):
        assert config["filters"]["masking"]["()"] == "sweeplab.core.masking.MaskingFilter"
        assert all(config["handlers"][name]["filters"] == ["masking"] for name in handlers)
    handler = logging.FileHandler(tmp_path / "train.log")
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("test_secrets.launcher")
    logger.addHandler(handler)
    try:
        logger.warning("#%d : %s", 0, "+db.password=hunter2 tracking.uri=http://alice:s3cret@host:5000 seed=1")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (tmp_path / "train.log").read_text() == "#0 : +db.password=*** tracking.uri=http://***@host:5000 seed=1\n"
