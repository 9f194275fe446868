"""`python train.py` / `sweeplab-train`: compose the config with Hydra and run one training job.

Only Hydra and the config schema are imported at start-up; torch is imported when a job runs,
so `--help` and config errors come back fast.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from sweeplab.config import register_configs
from sweeplab.errors import exit_on_user_error


def config_dir() -> str:
    """conf/ at the repository root (editable install), else the copy packaged with sweeplab."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "conf", package / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"sweeplab's conf/ folder is missing (looked beside {package})")


register_configs()


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    from sweeplab.run import train

    return train(cfg)
