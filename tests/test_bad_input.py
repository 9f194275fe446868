"""Bad input, one clear line each: what is wrong and how to fix it, a non-zero exit, no traceback, nothing lost.

In-process where the line is raised (the loaders, the range checks, the commands' main), with a few
end-to-end runs of train.py for what happens before any of sweeplab's code runs (the run dir).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from data_formats import write_cifar10, write_image_folder, write_label_files, write_png_claiming_size
from launch import REPO, TRAIN, run_train
from sweeplab.cli.main import main
from sweeplab.config.checks import check_ranges
from sweeplab.core.errors import UserError
from sweeplab.core.vocabulary import PARENT_TAG, PENDING_FILE, RESULT_FILE, SWEEP_DIR_TAG, SWEPT_TAG
from sweeplab.data import load_splits
from sweeplab.data.batches import make_batches
from sweeplab.data.label_files import load_label_files
from sweeplab.data.sources import load_image_folder
from sweeplab.runs.dir_guard import check_writable
from sweeplab.runs.results import read_result
from sweeplab.task.train import resume_state
from sweeplab.tracking import upload

CPU = torch.device("cpu")
# Registered here until conf/train.yaml lists the guard among hydra.callbacks (++: add, or keep what is there).
RUN_DIR_GUARD = "++hydra.callbacks.run_dir_guard._target_=sweeplab.runs.dir_guard.RunDirGuard"


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def cli_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """What `sweeplab <argv>` says on stderr: exactly one `error:` line, with exit code 2."""
    with pytest.raises(SystemExit) as exit_code:
        main(argv)
    assert exit_code.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    return error


# Image folders and label files.

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """train/{a,b}/ with 10 images each: 20 readable images."""
    return write_image_folder(tmp_path / "images", ("a", "b"), {"train": 10})


def load(root: Path):
    return load_image_folder(str(root), 0, 0.2, image_size=16, crop_size=None)


@pytest.mark.parametrize("images", [10, 1])
def test_a_folder_of_one_class_is_refused(tmp_path: Path, images: int) -> None:
    write_image_folder(tmp_path, ("ants",), {"train": images})
    with pytest.raises(UserError) as error:
        load(tmp_path)
    assert one_line(error.value).startswith(f"{tmp_path}/train holds one class folder (ants/, {images} image")
    assert "needs at least two: add a folder of images for each other class" in str(error.value)


def test_a_class_folder_without_images_is_refused(folder: Path) -> None:
    shutil.rmtree(folder / "train" / "b")
    (folder / "train" / "b").mkdir()
    with pytest.raises(UserError) as error:
        load(folder)
    assert one_line(error.value).startswith("Found no valid file for the classes b")
    assert f"expected {folder}/train/<class>/<image>" in str(error.value)


UNREADABLE = {
    "garbage": lambda path: path.write_bytes(b"<html>not an image</html>"),
    "empty": lambda path: path.write_bytes(b""),
    "bomb": lambda path: write_png_claiming_size(path, 20_000, 20_000),  # PIL's DecompressionBombError
    "bomb-warning": lambda path: write_png_claiming_size(path, 10_000, 10_000),  # PIL's DecompressionBombWarning
}


@pytest.mark.parametrize("kind", UNREADABLE)
def test_a_few_unreadable_images_are_skipped_with_one_warning(folder: Path, kind: str, caplog) -> None:
    broken = folder / "train" / "a" / "broken.png"
    UNREADABLE[kind](broken)
    with caplog.at_level(logging.WARNING):
        splits = load(folder)
    assert len(splits.train) + len(splits.val) == 20, "the file is skipped, every readable image kept"
    (warning,) = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert "\n" not in warning.message and str(broken) in warning.message
    assert warning.message.startswith(f"skipping 1 unreadable image of the 21 in {folder / 'train'}")


def test_mostly_unreadable_folders_and_emptied_classes_are_refused(folder: Path) -> None:
    for index in range(3):  # 3 of 23: more than a tenth
        (folder / "train" / "a" / f"broken_{index}.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError) as error:
        load(folder)
    assert one_line(error.value).startswith("3 unreadable images of the 23")
    for index in range(3):
        (folder / "train" / "a" / f"broken_{index}.jpg").unlink()
    for image in (folder / "train" / "b").iterdir():
        image.unlink()
    (folder / "train" / "b" / "broken.jpg").write_bytes(b"not an image")  # 1 of 11, but class b would be empty
    with pytest.raises(UserError, match="every class keeps some"):
        load(folder)


def test_label_files_skip_unreadable_images_too(tmp_path: Path, caplog) -> None:
    write_label_files(tmp_path, ("ants", "bees"), {"train": 10})
    broken = next((tmp_path / "train" / "ants_image").iterdir())
    broken.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        splits = load_label_files(str(tmp_path), 0, 0.2, image_size=16, crop_size=None)
    assert len(splits.train) + len(splits.val) == 19
    assert [str(broken) in record.message for record in caplog.records] == [True]


def test_an_image_truncated_after_its_header_stops_the_epoch_in_one_line(folder: Path) -> None:
    """The header check cannot see a file cut off later: decoding it stops the run, naming the file."""
    broken = folder / "train" / "a" / "a_1.png"
    broken.write_bytes(broken.read_bytes()[:200])
    splits = load(folder)
    with pytest.raises(UserError) as error:
        list(make_batches(splits.train, 64, False, CPU, 0, 0))
    assert one_line(error.value) == f"{broken} is not a readable image (image file is truncated): remove or replace it"


def test_a_cifar10_batch_failing_its_md5_is_refused_by_default(tmp_path: Path, compose_train) -> None:
    """torchvision checks the md5 before it unpickles (a pickle runs code): kept on unless the config says so."""
    write_cifar10(tmp_path, per_batch=2, test_size=2)
    overrides = ["dataset=cifar10", f"paths.data_dir={tmp_path}", "dataset.source.download=false"]
    with pytest.raises(UserError) as error:
        load_splits(compose_train(overrides).dataset)
    assert "do not match the official md5 sums" in one_line(error.value)
    assert "dataset.source.verify_checksums=false" in str(error.value)
    unverified = load_splits(compose_train([*overrides, "dataset.source.verify_checksums=false"]).dataset)
    assert len(unverified.test) == 2


# Damaged files a run left: checkpoints, result.json, mlflow_pending.json.

@pytest.fixture
def truncated_checkpoint(tmp_path: Path) -> bytes:
    whole = tmp_path / "whole.pt"
    torch.save({"model": {"weight": torch.zeros(64, 64)}, "config": {}, "classes": ["a", "b"]}, whole)
    return whole.read_bytes()[:1000]


def test_a_truncated_last_checkpoint_is_one_line(tmp_path: Path, truncated_checkpoint: bytes, compose_train) -> None:
    """What resume reads (sweeplab.task.train.resume_state)."""
    last = tmp_path / "checkpoints" / "last.pt"
    last.parent.mkdir()
    last.write_bytes(truncated_checkpoint)
    with pytest.raises(UserError) as error:
        resume_state(compose_train(), last)
    assert one_line(error.value).startswith(f"{last} is not a readable checkpoint")
    assert str(error.value).endswith("delete it to train this run again from the start")
    assert last.read_bytes() == truncated_checkpoint


@pytest.mark.parametrize("command", ["export", "predict"])
def test_a_truncated_best_checkpoint_is_one_line(command: str, tmp_path: Path, truncated_checkpoint: bytes,
                                                 capsys) -> None:
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(truncated_checkpoint)
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.png")
    argv = ["export", str(best.parents[1])] if command == "export" else \
        ["predict", "--run", str(best.parents[1]), str(tmp_path / "picture.png")]
    assert cli_error(argv, capsys).startswith(f"error: {best} is not a readable checkpoint")


@pytest.mark.parametrize("content", ['{\n "status": "RUNNING",\n "overr', "[]", '{"status": "RUNNING"}', "\xff\xfe"],
                         ids=["truncated", "a-list", "missing-fields", "not-utf8"])
def test_a_damaged_result_file_is_one_line_and_kept(tmp_path: Path, content: str) -> None:
    """What a re-run of a run dir or a sweep (its preflight) reads first."""
    path = tmp_path / RESULT_FILE
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(UserError) as error:
        read_result(tmp_path)
    assert one_line(error.value).startswith(f"{path} is damaged (")
    assert "delete it to run this job again from the start" in str(error.value)
    assert path.read_bytes() == content.encode("latin-1")


@pytest.mark.parametrize(("content", "says"), [
    ('{"tracking_uri": "sqlite:///m.db", "run_id": "ab', "is damaged ("),
    ("[1, 2]", "is not a pending upload sweeplab wrote"),
    ('{"run_id": "abc"}', "is not a pending upload sweeplab wrote (no artifacts, metrics, status, tags, tracking_uri)"),
], ids=["truncated", "a-list", "missing-keys"])
def test_a_damaged_pending_upload_is_one_line_and_kept(tmp_path: Path, content: str, says: str, capsys) -> None:
    path = tmp_path / PENDING_FILE
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_code:
        upload.main([str(path)])
    error = capsys.readouterr().err
    assert exit_code.value.code == 2 and error.count("\n") == 1 and error.startswith(f"error: {path} {says}")
    assert path.read_text() == content, "nothing was sent, and the file is kept"


# A run dir that cannot be written: Hydra creates it before any of sweeplab's code runs.

def test_a_run_dir_in_the_place_of_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for run_dir in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(UserError) as error:
            check_writable(run_dir, "hydra.run.dir")
        assert one_line(error.value) == (f"hydra.run.dir={run_dir} cannot be written: {tmp_path / 'file'} is a file, "
                                         "not a folder; set hydra.run.dir to another path")
    check_writable(tmp_path / "new" / "run", "hydra.run.dir")
    assert not (tmp_path / "new").exists(), "the check creates nothing"


def train_py(*overrides: str, as_user: list[str] | None = None) -> subprocess.CompletedProcess:
    """A process of its own: run as another user, or refused before Hydra hands over to sweeplab."""
    return run_train("tracking.enabled=false", RUN_DIR_GUARD, *overrides, cwd=Path(tempfile.gettempdir()),
                     env={"HOME": tempfile.gettempdir()}, command=[*(as_user or []), sys.executable, str(TRAIN)],
                     timeout=120)


def refused_in_one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_train_py_refuses_a_file_as_its_run_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("kept")
    error = refused_in_one_line(train_py(f"hydra.run.dir={tmp_path / 'file'}"))
    assert f"{tmp_path / 'file'} is a file, not a folder" in error and (tmp_path / "file").read_text() == "kept"


@pytest.fixture
def unwritable_dir():
    """A folder this test's user (nobody, when the tests run as root) can read but not write: (it, how to run as that
    user). Outside pytest's tmp dirs, which only their owner can search."""
    folder = Path(tempfile.mkdtemp(prefix="sweeplab-unwritable-"))
    folder.chmod(0o555)
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no unprivileged user to run train.py as")
        folder.chmod(0o755)  # root's: nobody reads it, and cannot write it
        as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        readable = subprocess.run([*as_user, sys.executable, "-c", f"open({str(TRAIN)!r})"],
                                  capture_output=True)
        if readable.returncode:
            pytest.skip(f"nobody cannot read this checkout ({REPO} is under a folder only its owner can search)")
    yield folder, as_user
    folder.chmod(0o755)
    shutil.rmtree(folder)


def test_train_py_refuses_a_run_dir_without_write_permission(unwritable_dir) -> None:
    folder, as_user = unwritable_dir
    error = refused_in_one_line(train_py(f"hydra.run.dir={folder / 'run'}", as_user=as_user))
    assert f"this user has no write permission in {folder}" in error and not any(folder.iterdir())


# Meaningless values, refused before any compute.

@pytest.mark.parametrize("overrides", [
    "optimizer.weight_decay=-1",
    "optimizer=adamw optimizer.weight_decay=-0.01",
    "optimizer=sgd optimizer.momentum=-0.1",
    "optimizer=sgd optimizer.momentum=1",
    "optimizer=sgd optimizer.nesterov=true optimizer.momentum=0",
    "optimizer.betas=[0.9,1.0]",
    "optimizer.betas=[-0.1,0.999]",
    "optimizer.betas=[0.9]",
    "optimizer=rmsprop optimizer.alpha=1.5",
    "scheduler=step scheduler.step_epochs=0",
    "scheduler=step scheduler.gamma=0",
    "scheduler=step scheduler.gamma=2",
    "scheduler=cosine scheduler.min_lr=-1",
    "scheduler=cosine scheduler.min_lr=1",
    "scheduler=onecycle scheduler.pct_start=0",
    "scheduler.warmup_epochs=-1",
    "trainer.label_smoothing=-0.1",
    "dataset.val_fraction=-0.5",
    "dataset.test_fraction=-0.1",
    "dataset.test_fraction=1",
    "trainer.epochs=0",
    "trainer.epochs=-3",
])
def test_out_of_range_values_name_their_key(overrides: str, compose_train) -> None:
    key = overrides.split()[-1].split("=")[0]  # the last override is the wrong value
    with pytest.raises(UserError) as error:
        check_ranges(compose_train(overrides.split()))
    assert one_line(error.value).startswith(f"{key}=") and " is invalid: it must be " in str(error.value)


# Runs and sweeps that are not there.

@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str, Path]:
    """A store with a sweep's parent run and one job: (its uri, the parent's id, the job's id, the sweep dir)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    sweep_dir = tmp_path_factory.mktemp("sweep").resolve()
    client = MlflowClient(uri)
    experiment = client.create_experiment("bad-input")
    parent = client.create_run(experiment, tags={SWEPT_TAG: "seed", SWEEP_DIR_TAG: str(sweep_dir)}).info.run_id
    job = client.create_run(experiment, tags={PARENT_TAG: parent}).info.run_id
    client.log_param(job, "seed", "0")
    return uri, parent, job, sweep_dir


UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("command", ["export", "predict"])
def test_export_and_predict_name_what_is_not_there(command: str, store, tmp_path: Path, capsys) -> None:
    uri = store[0]
    (tmp_path / "sweep" / "0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "sweep" / "0" / "checkpoints" / "best.pt").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.png")

    def refused(target: str) -> str:
        argv = [command, target, "--uri", uri] if command == "export" else \
            ["predict", "--run", target, "--uri", uri, str(tmp_path / "picture.png")]
        return cli_error(argv, capsys)

    assert f"no run id starts with deadbeef in {uri}: check the id or --uri" in refused("deadbeef")
    assert f"no MLflow run {UNKNOWN_ID} at {uri}" in refused(UNKNOWN_ID)
    assert "multirun/nowhere is neither a checkpoint file, a run dir nor an MLflow run id" \
        in refused("multirun/nowhere")
    assert f"{tmp_path / 'sweep'} is a sweep dir, not a run: pass one of its 1 jobs' run dirs, e.g. " \
           f"{tmp_path / 'sweep' / '0'}" in refused(str(tmp_path / "sweep"))


def test_compare_names_the_sweep_or_run_that_is_not_there(store, tmp_path: Path, capsys) -> None:
    uri, parent, job, _ = store

    def refused(*argv: str) -> str:
        return cli_error(["compare", "--uri", uri, *argv], capsys)

    assert "no run id starts with deadbeef" in refused("--sweep", "deadbeef")
    assert f"no run {UNKNOWN_ID} in {uri}: check the id or --uri" in refused("--sweep", UNKNOWN_ID)
    assert f"run {job} is not a sweep's parent run (it is a job of sweep {parent[:8]}: pass that)" \
           in refused("--sweep", job)
    assert f"no sweep recorded from {tmp_path} in {uri}" in refused("--sweep", str(tmp_path))
    assert "multirun/nowhere is not an MLflow run id" in refused("--sweep", "multirun/nowhere")
    assert "no run id starts with deadbeef" in refused("--command", "deadbeef")
    assert f"no run {UNKNOWN_ID} in {uri}: copy the id from `sweeplab compare`" in refused("--command", UNKNOWN_ID)
    assert "multirun/nowhere is not an MLflow run id" in refused("--command", "multirun/nowhere")
    assert "--limit 0 is invalid: show at least 1 run" in refused("--limit", "0")


def test_compare_finds_a_sweep_by_its_dir(store, capsys) -> None:
    uri, _, job, sweep_dir = store
    assert main(["compare", "--uri", uri, "--sweep", str(sweep_dir), "--json"]) == 0
    assert [row["run_id"] for row in json.loads(capsys.readouterr().out)] == [job]


def test_predict_refuses_top_k_0(tmp_path: Path, capsys) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.png")
    error = cli_error(["predict", "--run", str(tmp_path), "--top-k", "0", str(tmp_path / "picture.png")], capsys)
    assert error == "error: --top-k 0 is invalid: show at least 1 class\n"


@pytest.mark.parametrize("arguments, line", [
    (["postgresql://mlflow:s3cret@127.0.0.1:1/mlflow"],
     "error: cannot open the backend postgresql://***@127.0.0.1:1/mlflow (connection failed: "),
    (["http://host:5000"], "error: http://host:5000 is not a database URI: pass one such as postgresql://HOST:5432/DB"),
    (["sqlite:///mlflow.db", "--auth"], "error: --auth protects its forms with a secret key: set "
     "MLFLOW_FLASK_SERVER_SECRET_KEY"),
], ids=["database down", "not a database", "auth without a key"])
def test_a_server_that_cannot_start_is_one_line(arguments: list[str], line: str, tmp_path: Path, capsys,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    assert cli_error(["server", *arguments], capsys).startswith(line)


# Tracking stores, ports and hosts: refused in one line before anything starts (no hang).

STORES = {
    "damaged": ("bad.db", "is not an sqlite database (damaged, or another kind of file)"),
    "a folder": ("folder", "is a folder, not an sqlite file"),
}


@pytest.fixture
def bad_stores(tmp_path: Path) -> Path:
    (tmp_path / "bad.db").write_bytes(b"these bytes are no sqlite database\n" * 10)
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("command", ["compare", "ui", "predict"])
def test_a_damaged_or_folder_sqlite_store_is_one_line(command: str, kind: str, bad_stores: Path, capsys) -> None:
    name, says = STORES[kind]
    uri = f"sqlite:///{bad_stores / name}"
    argv = {"compare": ["compare", "--uri", uri], "ui": ["ui", "--uri", uri],
            "predict": ["predict", "--run", "0123456789abcdef0123456789abcdef", "--uri", uri, "x.png"]}[command]
    assert says in cli_error(argv, capsys)
    assert (bad_stores / "bad.db").read_bytes() == b"these bytes are no sqlite database\n" * 10  # kept as it was


@pytest.mark.parametrize(("uri", "says"), [
    ("file:///tmp/mlruns", "is a file store, which MLflow 3 no longer writes: use sqlite:///mlflow.db"),
    ("foo://bar", "has a scheme MLflow does not track in (foo)"),
    ("sqlite:///{tmp}/bad.db", "is not an sqlite database"),
])
def test_train_py_refuses_a_store_it_cannot_record_in_within_seconds(uri: str, says: str, bad_stores: Path) -> None:
    """A run and a sweep alike, before training: no run dir is trained in, nothing hangs."""
    for sweep in ([], ["-m", "optimizer.lr=1e-3,1e-2"]):
        result = run_train(*sweep, f"tracking.uri={uri.format(tmp=bad_stores)}", cwd=bad_stores, timeout=60)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode != 0 and len(errors) == 1 and says in errors[0], result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert not list(bad_stores.glob("**/checkpoints"))


@pytest.mark.parametrize(("argv", "says"), [
    (["ui", "--port", "70000"], "argument --port: 70000 is not a port: give a number from 1 to 65535"),
    (["server", "--port", "0"], "argument --port: 0 is not a port"),
    (["ui", "--host", "no-such-host.invalid"], "--host no-such-host.invalid is not an address this machine can listen"),
    (["ui", "--host", "192.0.2.1"], "--host 192.0.2.1 is not an address this machine can listen on"),
], ids=["ui port", "server port", "unknown host", "another machine's address"])
def test_ports_and_hosts_that_cannot_be_listened_on_are_one_line(argv: list[str], says: str, tmp_path: Path,
                                                                  capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_code:
        main(argv)
    assert exit_code.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and says in errors[0]


# Config errors: fast, before any dir, torch or MLflow run.

@pytest.mark.parametrize("override", ["optimizer.lr=-1", "seed=-1", "seed=4294967296", "dataset.image_size=-5",
                                      "dataset.augment.random_crop_padding=-1", "model.hidden=[-3]"])
def test_a_value_out_of_range_is_answered_before_torch_or_any_run_dir(override: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    result = run_train(override, cwd=tmp_path)
    seconds = time.perf_counter() - started
    key = override.split("=")[0]
    assert result.returncode == 2 and result.stderr.startswith(f"error: {key}=") and "is invalid" in result.stderr
    assert list(tmp_path.iterdir()) == [], "no run dir, no mlflow.db"
    assert seconds < 5, seconds  # half a second on a quiet machine; a loaded test worker is slower


def test_batch_normalisation_given_one_image_a_step_is_refused_and_leaves_no_mlflow_run(train_here, tmp_path: Path
                                                                                         ) -> None:
    result = train_here("model=resnet18", "dataset.batch_size=1", "trainer.epochs=1", "export.onnx=false",
                        "trainer.progress=false", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1
    assert "model=resnet18 has batch normalisation, which needs at least 2 images a training step" in errors[0]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []  # refused before its first epoch: deleted, not left FAILED
    assert [run.info.lifecycle_stage for run in client.search_runs(experiments, run_view_type=3)] == ["deleted"]


def test_a_resume_refused_for_a_damaged_checkpoint_keeps_the_runs_record(train_here, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    arguments = ["trainer.epochs=1", "tracking.enabled=false", "export.onnx=false", "trainer.progress=false",
                 f"hydra.run.dir={run_dir}"]
    assert train_here(*arguments, cwd=tmp_path).returncode == 0
    record = json.loads((run_dir / RESULT_FILE).read_text()) | {"status": "KILLED", "reason": "SIGTERM"}
    (run_dir / RESULT_FILE).write_text(json.dumps(record))
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    result = train_here(*arguments, cwd=tmp_path)
    assert result.returncode != 0 and f"error: {last} is not a readable checkpoint" in result.stderr
    assert json.loads((run_dir / RESULT_FILE).read_text()) == record


def test_a_result_file_that_is_a_folder_is_one_line_before_hydra_writes(tmp_path: Path) -> None:
    (tmp_path / "run" / RESULT_FILE).mkdir(parents=True)
    result = run_train(f"hydra.run.dir={tmp_path / 'run'}", "tracking.enabled=false", cwd=tmp_path)
    assert result.returncode == 2 and "is a folder (or another kind of file), not the run's record" in result.stderr
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [RESULT_FILE]


# Searches: a malformed space or a damaged study storage, one line before any trial.

@pytest.mark.parametrize(("override", "says"), [
    ("optimizer.lr=interval(0.1,0.001)", "`low <= high` must hold"),
    ("optimizer.lr=tag(log,interval(0,0.1))", "`low > 0` must hold for `log=True`"),
])
def test_a_malformed_search_space_is_one_line(override: str, says: str, tmp_path: Path) -> None:
    result = run_train("-m", "hparams_search=digits_mlp", override, cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1 and says in errors[0] and "low below high" in errors[0]
    assert not (tmp_path / "multirun").exists()


def test_a_damaged_study_storage_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "optuna.db").write_bytes(b"not a database at all\n" * 8)
    result = run_train("-m", "hparams_search=digits_mlp", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("error: hydra.sweeper.storage=sqlite:///optuna.db: optuna.db is not an sqlite")
    assert (tmp_path / "optuna.db").read_bytes() == b"not a database at all\n" * 8
