"""`sweeplab ui` on the default store, opened in a real headless Chromium (Debian's package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from launch import run_train
from mlflow_server import free_port, stop_group

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SWEEP_DIR = "browser-visible-sweep"


def chromium(url: str, profile: Path, *mode: str) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--window-size=1400,900", *mode, url,
    ]
    browser = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = browser.communicate(timeout=180)  # a loaded 2-core machine: a screenshot took over 120 s
    finally:  # a browser that hangs or fails leaves no renderer or GPU process behind
        stop_group(browser, timeout=10)
    assert browser.returncode == 0, err[-3000:]
    return out


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run scripts/install-test-deps.sh (Debian's chromium)")
def test_ui_shows_a_sweep_as_one_parent_run_in_a_browser(tmp_path: Path) -> None:
    result = run_train("-m", "optimizer.lr=0.01,0.003", f"hydra.sweep.dir={tmp_path / SWEEP_DIR}", "trainer.epochs=1",
                       "export.onnx=false", "tracking.log_model=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("sweeplab-digits")
    port = free_port()
    said = (tmp_path / "ui.err").open("w")
    ui = subprocess.Popen([str(Path(sys.executable).parent / "sweeplab"), "ui", "--port", str(port)], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=said, text=True, start_new_session=True)
    try:
        first_line = ui.stdout.readline()
        assert first_line.startswith(f"MLflow UI for sqlite:///{tmp_path / 'mlflow.db'} at http://127.0.0.1:{port}")
        wait_until_healthy(f"http://127.0.0.1:{port}/health")
        page = first_line.split(" at ")[1].split()[0]  # the newest experiment's runs, in the model-training mode
        assert page == f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs?workflowType=" \
                       "machine_learning"
        screenshot = tmp_path / "ui.png"
        chromium(page, tmp_path / "profile", f"--screenshot={screenshot}")
        dom = chromium(page, tmp_path / "profile", "--dump-dom")
    finally:
        stop_group(ui, timeout=30)  # the UI and its uvicorn workers: their own session, started above
    assert "Model registry" in dom, "MLflow's model-training mode (its GenAI mode hides the registry)"
    said.close()
    assert "is deprecated" not in (tmp_path / "ui.err").read_text(), "MLflow's workers' deprecation warnings"
    assert screenshot.stat().st_size > 10_000
    assert "sweeplab-digits" in dom and f"sweep {SWEEP_DIR}" in dom, "the parent run is listed"
    assert "<strong>3</strong> matching runs" in dom, "the parent and its two children"


def wait_until_healthy(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")
