"""The documentation stays true and whole: the generated config reference is current, the site builds with no
broken link or anchor, and the README stays a front page (the rest lives on the site, docs/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300


def test_the_config_reference_is_what_the_configs_generate() -> None:
    """docs/reference/config.md is generated from conf/ and the schema; a change to either must regenerate it.

    Generated in a fresh interpreter, as the command does it: Hydra's global state stays out of this process.
    """
    generated = subprocess.run([sys.executable, "-m", "sweeplab.config.reference"], cwd=REPO, capture_output=True,
                               text=True, encoding="utf-8", timeout=120)
    assert generated.returncode == 0, generated.stderr
    committed = (REPO / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert committed == generated.stdout, (
        "docs/reference/config.md is stale: run `python -m sweeplab.config.reference > docs/reference/config.md`"
    )


def test_the_site_builds_without_a_broken_link_or_anchor(tmp_path: Path) -> None:
    """mkdocs.yml turns every unresolved link and anchor into a warning, and --strict makes a warning fatal."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_is_at_most_300_lines() -> None:
    """The README is the front page: set-up, the commands people type, the config groups, links to the site."""
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to a page under docs/"
