"""A sweep job's config without composing it anew: what Hydra composes, for a third of a second less a job.

Hydra composes every job's config from its defaults list (a third of a second here, more than a small job's
other costs). A grid's jobs and a search's trials differ from each other in values, less often in structure: a
job takes the config composed for an earlier job of the same structure (the same config groups chosen, the same
keys set) and puts its own values in, as Hydra's last composition step would (`OmegaConf.update`, type-checked by
the schema). Only
plain values take this path: a scalar set on a key the config has (`optimizer.lr=0.01`); a group (`optimizer=sgd`)
is part of the structure, and anything else (`+key`, `~key`, a list or dict value) is composed by Hydra.
tests/test_search.py checks the result against Hydra's own, key for key.
"""

from __future__ import annotations

import copy
from typing import Any

from hydra._internal.config_loader_impl import get_overrides_dirname  # the naming Hydra gives a job
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf


class TrialConfigs:
    """Hydra's config loader for a search's launcher, with `load_sweep_config` reusing earlier compositions."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.composed: dict[tuple, DictConfig] = {}  # structure -> a config of that structure, as Hydra made it

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet: being unpickled (joblib sends it to its workers)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        overrides = OverridesParser.create().parse_overrides(sweep_overrides)
        choices = master_config.hydra.runtime.choices
        structure = tuple(override.input_line if not plain(override, choices) else override.key_or_group
                          for override in overrides)
        if structure not in self.composed:
            self.composed[structure] = self.loader.load_sweep_config(master_config, sweep_overrides)
            return copy.deepcopy(self.composed[structure])
        return with_values(self.composed[structure], overrides, master_config)


def plain(override: Override, choices: DictConfig) -> bool:
    """A scalar value for a key, not a config group's choice, nor an addition, a deletion or a sweep."""
    return (not (override.is_add() or override.is_force_add() or override.is_delete() or override.is_sweep_override()
                 or override.is_hydra_override())
            and override.key_or_group not in choices and override.package is None
            and not isinstance(override.value(), (dict, list)))


def with_values(composed: DictConfig, overrides: list[Override], master_config: DictConfig) -> DictConfig:
    """`composed` with these overrides' values, and the record of them Hydra keeps (overrides, override_dirname).
    Hydra overrides are never plain, so `hydra.overrides.hydra` is the composed config's already."""
    config = copy.deepcopy(composed)
    choices = master_config.hydra.runtime.choices
    for override in overrides:
        if plain(override, choices):
            OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
    task = [override for override in overrides if not override.is_hydra_override()]
    config.hydra.overrides.task = [override.input_line for override in task]
    naming = config.hydra.job.config.override_dirname
    config.hydra.job.override_dirname = get_overrides_dirname(overrides=task, kv_sep=naming.kv_sep,
                                                              item_sep=naming.item_sep,
                                                              exclude_keys=naming.exclude_keys)
    OmegaConf.copy_cache(from_config=master_config, to_config=config)
    return config
