"""`python train.py` / `sweeplab-train`: compose the config with Hydra and run one training job.

Only Hydra and the config schema are imported at start-up; torch is imported when a job runs,
so `--help` and config errors come back fast.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sweeplab.config import register_configs
from sweeplab.errors import UserError, exit_on_user_error, first_line


def config_dir() -> str:
    """conf/ at the repository root (editable install), else the copy packaged with sweeplab."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "conf", package / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"sweeplab's conf/ folder is missing (looked beside {package})")


register_configs()


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def run(cfg: DictConfig) -> float:
    """One job. A multirun job's UserError propagates, so Hydra still runs the batch's other jobs
    (and names the failed one); a single run exits at once with the one line."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sweeplab.run import train

    if HydraConfig.get().mode == RunMode.RUN:
        return exit_on_user_error(train)(cfg)
    return train(cfg)


@exit_on_user_error
def main() -> None:
    """Run Hydra; user errors, Hydra's config errors (bad option, type or key) included, end as one line.

    HYDRA_FULL_ERROR=1 makes Hydra raise instead of printing its multi-line report; a user who
    sets it themselves gets Hydra's full traceback.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        run()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run()
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(one_line(error)) from None


def one_line(error: BaseException) -> str:
    """The first line of Hydra's message and of its cause, plus the options it lists, if any."""
    text = str(error).strip()
    parts = [first_line(error)]
    if error.__cause__ is not None and str(error.__cause__).strip():
        parts.append(first_line(error.__cause__))
    listed = re.search(r"Available options in '[^']*':\n(.*?)(?:\nConfig search path|\Z)", text, re.S)
    if listed:
        options = [o.strip() for o in listed.group(1).splitlines() if o.strip() and not o.strip().startswith("base_")]
        parts.append(f"choose one of {', '.join(options)}")
    return ": ".join(parts)
