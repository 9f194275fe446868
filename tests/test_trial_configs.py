"""A search trial's config reused from an earlier trial's (sweeplab.sweeps.trial_configs) is Hydra's, key for key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from sweeplab.config.schema import config_dir, register_configs
from sweeplab.sweeps.trial_configs import TrialConfigs

TRIALS = [
    ["optimizer=adam", "optimizer.lr=0.01", "dataset.batch_size=32", "trainer.epochs=3"],
    ["optimizer=adam", "optimizer.lr=0.0003", "dataset.batch_size=128", "trainer.epochs=3"],  # reused: values only
    ["optimizer=sgd", "optimizer.lr=0.2", "dataset.batch_size=64", "trainer.epochs=3"],  # another group: composed
    ["optimizer=sgd", "optimizer.lr=0.05", "dataset.batch_size=64", "trainer.epochs=3", "+model.extra=1"],
    ["optimizer=sgd", "optimizer.lr=0.07", "dataset.batch_size=16", "trainer.epochs=3"],  # reused again
]


@pytest.fixture
def loader_and_master():
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        master = compose(config_name="train", overrides=["hydra.sweep.dir=/tmp/sweep"], return_hydra_config=True)
        yield GlobalHydra.instance().config_loader(), master


def test_a_trial_s_config_is_what_hydra_composes(loader_and_master) -> None:
    loader, master = loader_and_master
    reusing = TrialConfigs(loader)
    for overrides in TRIALS:
        ours, hydras = reusing.load_sweep_config(master, overrides), loader.load_sweep_config(master, overrides)
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), overrides
    assert len(reusing.composed) == 3, "adam, sgd, and sgd with +model.extra: each composed once"


def test_a_wrong_value_is_refused_as_hydra_refuses_it(loader_and_master) -> None:
    loader, master = loader_and_master
    reusing = TrialConfigs(loader)
    reusing.load_sweep_config(master, ["trainer.epochs=3"])
    with pytest.raises(Exception, match="trainer.epochs"):
        reusing.load_sweep_config(master, ["trainer.epochs=three"])
