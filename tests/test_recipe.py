"""The recipe switches timm and torchvision's references have: EMA, MixUp/CutMix, augmentation policies, random
erasing, debug presets (fast, limit, overfit, profile), a modern CIFAR-10 preset, early stopping that says so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from data_formats import class_images, write_cifar10
from sweeplab.config.checks import check_ranges
from sweeplab.config.schema import AugmentConfig, MLPConfig
from sweeplab.core.errors import UserError
from sweeplab.data.augment import BatchPreprocess
from sweeplab.data.batches import FirstBatches, SameBatches, TensorBatches
from sweeplab.data.policies import BatchMixing, build_policies
from sweeplab.models import build_model
from sweeplab.runs.classifier import rebuild_model
from sweeplab.task.train import moving_average
from sweeplab.training.checkpoint import load_checkpoint, serving_weights
from sweeplab.training.engine import Trainer

CPU = torch.device("cpu")


def batches(n: int = 64, batch_size: int = 16, shuffle: bool = True) -> TensorBatches:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 4
    data = TensorDataset(torch.from_numpy(class_images(labels, 1, 8, rng)), torch.from_numpy(labels))
    return TensorBatches(data, batch_size, shuffle, CPU, seed=0)


def trainer(epochs: int = 2, ema_decay: float | None = None, mix=None) -> Trainer:
    torch.manual_seed(0)
    model = build_model(OmegaConf.structured(MLPConfig(hidden=[32])), (1, 8, 8), 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(model=model, optimizer=optimizer,
                   scheduler=torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0),
                   train_batches=batches(), val_batches=batches(shuffle=False),
                   preprocess=BatchPreprocess([0.3], [0.3], AugmentConfig()), device=CPU, epochs=epochs,
                   ema=moving_average(model, ema_decay), mix=mix)


def test_the_ema_is_evaluated_every_epoch_and_resumes_as_it_was() -> None:
    run = trainer(ema_decay=0.9)
    history = run.fit()
    assert all(0 <= m.val_ema_acc <= 1 and m.val_ema_loss > 0 for m in history)
    assert {"val_ema/acc", "val_ema/loss"} <= set(history[-1].as_dict())
    state = run.state_dict()
    averaged, trained = state["ema"]["module.net.1.weight"], state["model"]["net.1.weight"]
    assert not torch.equal(averaged, trained), "the average lags the weights"
    resumed = trainer(ema_decay=0.9)
    resumed.load_state_dict(state)
    assert all(torch.equal(value, resumed.ema.state_dict()[key]) for key, value in state["ema"].items())


def test_ema_for_best_serves_the_ema_weights() -> None:
    run = trainer(ema_decay=0.9)
    run.fit()
    payload = {**run.state_dict(), "config": {"trainer": {"ema_for_best": True}}}
    weights = serving_weights(payload)
    assert set(weights) == set(payload["model"]) and torch.equal(weights["net.1.weight"],
                                                                 payload["ema"]["module.net.1.weight"])
    payload["config"]["trainer"]["ema_for_best"] = False
    assert serving_weights(payload) is payload["model"]


def test_mixing_gives_soft_targets_seeded_and_trains() -> None:
    augment = AugmentConfig(mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5)
    images, labels = torch.randn(8, 1, 8, 8), torch.arange(8) % 4
    mixed = []
    for _ in range(2):
        torch.manual_seed(3)
        mixed.append(BatchMixing(augment, 4)(images, labels))
    assert torch.equal(mixed[0][0], mixed[1][0]) and torch.equal(mixed[0][1], mixed[1][1]), "seeded"
    targets = mixed[0][1]
    assert targets.shape == (8, 4) and torch.allclose(targets.sum(dim=1), torch.ones(8))
    assert BatchMixing(AugmentConfig(mixup_alpha=0.4, mix_prob=0.0), 4)(images, labels)[1] is labels
    history = trainer(mix=BatchMixing(augment, 4)).fit()
    assert all(0 <= m.train_acc <= 1 for m in history), "accuracy against the dominant label"


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment", "autoaugment"])
def test_policies_draw_for_each_image_from_the_seeded_generator(policy: str) -> None:
    image = torch.from_numpy(class_images(np.array([1]), 3, 32, np.random.default_rng(0)))
    batch = image.repeat(16, 1, 1, 1)
    augmented = []
    for _ in range(2):
        torch.manual_seed(5)
        augmented.append(build_policies(AugmentConfig(policy=policy), 10).image(batch))
    assert torch.equal(*augmented) and augmented[0].dtype == torch.uint8 and augmented[0].shape == batch.shape
    assert len({bytes(img.numpy()) for img in augmented[0]}) > 1, "images of one batch get their own draws"


def test_random_erasing_erases_in_training_only() -> None:
    policies = build_policies(AugmentConfig(random_erasing=1.0), 10)
    preprocess = BatchPreprocess([0.5], [0.5], AugmentConfig(), erase=policies.erase)
    images = torch.full((4, 1, 16, 16), 255, dtype=torch.uint8)
    assert (preprocess(images, train=True) == 0).any(dim=(1, 2, 3)).all(), "each image got a rectangle"
    assert (preprocess(images, train=False) == 1).all()


def test_batch_limits_as_counts_fractions_and_the_same_batches() -> None:
    full = batches()
    assert len(FirstBatches.of(full, 2)) == 2 and len(list(FirstBatches.of(full, 0.5))) == 2
    assert FirstBatches.of(full, None) is full
    same = SameBatches(full, 2)
    first, second = list(same), list(same)
    assert len(first) == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(("override", "key"), [
    ("dataset.augment.policy=autoaugmentt", "dataset.augment.policy"),
    ("dataset.augment.mixup_alpha=-1", "dataset.augment.mixup_alpha"),
    ("dataset.augment.random_erasing=1.5", "dataset.augment.random_erasing"),
    ("trainer.ema_decay=1.0", "trainer.ema_decay"),
    ("trainer.ema_for_best=true", "trainer.ema_for_best"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches"),
    ("trainer.limit_val_batches=1.5", "trainer.limit_val_batches"),
])
def test_bad_recipe_values_are_one_line(override: str, key: str, compose_train) -> None:
    with pytest.raises(UserError, match=f"^{key}=") as error:
        check_ranges(compose_train([override]))
    assert "\n" not in str(error.value)


@pytest.fixture
def train(train_here):
    """A run in this process that must succeed, into cwd/run."""

    def run(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
        result = train_here(f"hydra.run.dir={cwd / 'run'}", "trainer.progress=false", *overrides, cwd=cwd)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


@pytest.mark.slow
def test_debug_fast_trains_one_batch_and_records_nothing(train, tmp_path: Path) -> None:
    result = train(tmp_path, "debug=fast")
    assert "debugging limits: the scores cover 1 of 17 train batches, 1 of 5 val batches, 1 of 6 test batches" in \
        " ".join(result.stdout.split()), "the summary says its test score is on one batch, not 359 images"
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["step"] == 1 and last["epoch"] == 1
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "run" / "export").exists()


@pytest.mark.slow
def test_debug_overfit_drives_the_loss_to_near_zero(train, tmp_path: Path) -> None:
    train(tmp_path, "debug=overfit")
    history = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["history"]
    assert history[0]["train_loss"] > 1 and history[-1]["train_loss"] < 0.05 and history[-1]["val_acc"] == 1.0


@pytest.mark.slow
def test_debug_profile_writes_a_trace_and_logs_it(train, tmp_path: Path) -> None:
    train(tmp_path, "debug=profile", "trainer.early_stopping_patience=1", "optimizer.lr=1e-9", "trainer.epochs=4")
    trace = json.loads((tmp_path / "run" / "profile" / "trace.json").read_text())
    assert any("linear" in event.get("name", "") for event in trace["traceEvents"])
    if not torch.cuda.is_available():  # Kineto's complaint, printed from C++, is the run's log's, not the terminal's
        assert "torch.profiler printed:" in (tmp_path / "run" / "train.log").read_text()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "profile")} == {"profile/trace.json"}
    # The same run's learning rate is too small to improve anything: it stops early and says so.
    assert run.data.tags["sweeplab.early_stopped"] == "after epoch 2 of 4"
    line = "early stop after epoch 2 of 4: val/acc no better than"
    assert line in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.slow
def test_ema_for_best_picks_tests_and_exports_the_average(train, tmp_path: Path) -> None:
    train(tmp_path, "trainer.epochs=3", "trainer.ema_decay=0.9", "trainer.ema_for_best=true", "tracking.enabled=false",
          "dataset.augment.mixup_alpha=0.2", "dataset.augment.policy=trivialaugment")
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["metrics"]["val_ema/acc"] == max(epoch["val_ema_acc"] for epoch in best["history"])
    rebuilt = rebuild_model(best).state_dict()
    assert torch.equal(rebuilt["net.1.weight"], best["ema"]["module.net.1.weight"])
    assert (tmp_path / "run" / "export" / "model.onnx").is_file(), "exported, its parity checked"


@pytest.mark.slow
def test_the_modern_cifar10_preset_trains_an_epoch(train, tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data", per_batch=8, test_size=16)
    train(tmp_path, "experiment=cifar10_modern", f"paths.data_dir={tmp_path / 'data'}", "trainer.epochs=1",
          "dataset.source.download=false", "dataset.source.verify_checksums=false", "dataset.batch_size=8",
          "dataset.eval_batch_size=16", "scheduler.warmup_epochs=0", "tracking.enabled=false", "export.onnx=false")
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["config"]["trainer"]["ema_for_best"] and "ema" in best and best["metrics"]["val_ema/acc"] >= 0


def test_image_folders_augment_in_their_workers_and_validate_unaugmented(train_only_folder: Path) -> None:
    """Folders apply the policy per image where they decode (faster: benchmarks/augment_policy.py), val never."""
    from sweeplab.data.sources import load_image_folder

    plain = load_image_folder(str(train_only_folder), 0, 0.3, 24, None)
    torch.manual_seed(0)
    augmented = load_image_folder(str(train_only_folder), 0, 0.3, 24, None, policy="trivialaugment")
    assert augmented.policy_applied and not plain.policy_applied
    assert all(torch.equal(plain.val[i][0], augmented.val[i][0]) for i in range(len(plain.val)))
    differing = sum(not torch.equal(plain.train[i][0], augmented.train[i][0]) for i in range(len(plain.train)))
    assert differing > 0 and build_policies(AugmentConfig(policy="trivialaugment"), 3, on_batches=False).image is None
