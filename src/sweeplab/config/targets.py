"""Which `_target_`s a config may name, checked before sweeplab instantiates anything: the data, model,
optimizer and schedule a config (or an override typed on the command line) names are sweeplab's factories
and torch's optimizers, and a search's sampler and pruner Optuna's. (Hydra itself instantiates
`hydra.callbacks` and its launchers, under its own blocklist.)"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from sweeplab.core.errors import UserError

TRUSTED_TARGETS = ("sweeplab.", "torch.optim.")
SEARCH_TARGETS = ("optuna.samplers.", "optuna.pruners.")  # what an Optuna search's sampler and pruner may name


def trusted_instantiate(config: Any, *args: Any, trusted: tuple[str, ...] = TRUSTED_TARGETS, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, after checking every `_target_` in `config` (nested ones too)."""
    for target in targets_in(config):
        check_target(target, trusted)
    return instantiate(config, *args, **kwargs)


def check_target(target: str, trusted: tuple[str, ...] = TRUSTED_TARGETS) -> None:
    if not target.startswith(trusted):
        allowed = ", ".join(f"{prefix}*" for prefix in trusted)
        raise UserError(f"_target_={target} is not allowed (a config may name only {allowed}): "
                        "choose a config option instead (e.g. model=cnn, optimizer=sgd)")


def targets_in(config: Any) -> list[str]:
    if isinstance(config, (DictConfig, dict)):
        found = [str(config["_target_"])] if "_target_" in config else []
        return found + [t for key, value in config.items() if key != "_target_" for t in targets_in(value)]
    if isinstance(config, (ListConfig, list, tuple)):
        return [target for item in config for target in targets_in(item)]
    return []
