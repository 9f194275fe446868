"""The config reference page, docs/reference/config.md, generated from the configs Hydra composes.

    python -m sweeplab.config.reference > docs/reference/config.md

Generated, not written, so that it cannot drift from conf/ and the schema: each option of each group is
composed as `python train.py group=option` composes it, and each of its keys is listed with the type the
schema declares, the value the composition gives and the comment the schema's source puts on the field
(tests/test_docs.py fails when the committed page is not what this prints). Light like the rest of the
package: Hydra and the schema only, never torch.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import sys
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from sweeplab.config.checks import RANGES
from sweeplab.config.schema import config_dir, register_configs

GROUPS = ("dataset", "model", "optimizer", "scheduler", "device", "trainer", "tracking")
TOP_LEVEL = ("seed", "optimized_metric", "paths", "export", "sweep")
COMMAND = "python -m sweeplab.config.reference > docs/reference/config.md"


class Key(NamedTuple):
    """One row of a table: a dotted key as a user overrides it."""

    name: str
    declared: str  # the schema's annotation, as written in its source
    default: str
    comment: str


def options(group: str) -> list[str]:
    """A group's options, sorted: the YAML files of conf/<group>/, as `--help` lists them."""
    return sorted(path.stem for path in (Path(config_dir()) / group).glob("*.yaml"))


@cache
def field_comments(source_file: str) -> dict[tuple[str, str], str]:
    """(class, field) -> the `#` comment lines directly above a dataclass field and at the end of its line.

    Read from the source, not copied by hand, so that the page says what the schema says.
    """
    text = Path(source_file).read_text()
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(text).readline) if token.type == tokenize.COMMENT}
    lines = text.splitlines()
    found = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    found[(node.name, statement.target.id)] = field_comment(statement, lines, comments)
    return found


def field_comment(statement: ast.AnnAssign, lines: list[str], comments: dict[int, str]) -> str:
    """The full-line comments right above a statement (no blank line between), then its trailing comment."""
    above = []
    line = statement.lineno - 1
    while line in comments and lines[line - 1].lstrip().startswith("#"):
        above.insert(0, comments[line])
        line -= 1
    trailing = [comments[line] for line in range(statement.lineno, statement.end_lineno + 1) if line in comments]
    return " ".join(above + trailing)


def comment_for(schema: type, name: str) -> str:
    """The comment of a field, from the first class of the schema's hierarchy that comments it.

    A subclass that only changes a default (TorchvisionConfig.min_size) keeps its parent's explanation.
    """
    for cls in schema.__mro__:
        if dataclasses.is_dataclass(cls):
            comment = field_comments(sys.modules[cls.__module__].__file__).get((cls.__name__, name), "")
            if comment:
                return comment
    return ""


def schema_fields(schema: Any) -> dict[str, dataclasses.Field]:
    """A node's schema fields by name; none for a node no dataclass types (a data set's `source`)."""
    return {field.name: field for field in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else {}


def keys(node: DictConfig, prefix: str) -> Iterator[Key]:
    """Every leaf key under a composed node, dotted, in the composed order, with its type and comment.

    Values are read unresolved, so interpolations (`${..val_fraction}`) show as written. A key no schema
    declares (under a data set's `source: Any`) is typed Any: Hydra does not check it.
    """
    schema = OmegaConf.get_type(node)
    fields = schema_fields(schema)
    for name, value in OmegaConf.to_container(node, resolve=False).items():
        if isinstance(value, dict) and value:
            yield from keys(node[name], f"{prefix}{name}.")
        elif name in fields:
            yield Key(f"{prefix}{name}", str(fields[name].type), shown(value), comment_for(schema, name))
        else:
            yield Key(f"{prefix}{name}", "Any", shown(value), "")


def shown(value: Any) -> str:
    """A value as it is typed on the command line (YAML's spelling: null, true, [a, b])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {shown(item)}" for key, item in value.items()) + "}"
    return str(value)


def cell(text: str) -> str:
    """Text safe in a Markdown table cell, on GitHub and on the site alike."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def table(rows: list[Key]) -> list[str]:
    """A Markdown table of keys; the type as text, since a `|` in a code span breaks GitHub's tables."""
    lines = ["| key | type | default | valid values | description |", "|---|---|---|---|---|"]
    lines += [f"| `{row.name}` | {cell(row.declared)} | `{row.default}` | {cell(valid_values(row.name))} | "
              f"{cell(row.comment)} |" for row in rows]
    return lines


def valid_values(key: str) -> str:
    """What check_ranges accepts for a numeric key (sweeplab.config.checks.RANGES), said shortly."""
    if key not in RANGES:
        return ""
    return RANGES[key][1].removeprefix("must be ").removeprefix("must list ")


def yaml_header(path: Path) -> str:
    """The comment an option's YAML file opens with: what the option is, in its author's words."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            header.append(line.lstrip("#").strip())
    return " ".join(part for part in header if part)


def option_section(group: str, option: str, composed: DictConfig) -> list[str]:
    """One option of a group: its file's own description, its schema, and the table of its keys."""
    node = composed[group]
    schema = OmegaConf.get_type(node)
    lines = [f"### `{group}={option}`", ""]
    header = yaml_header(Path(config_dir()) / group / f"{option}.yaml")
    if header:
        lines += [cell(header), ""]
    if dataclasses.is_dataclass(schema):
        lines += [f"Schema: `{schema.__module__}.{schema.__name__}`.", ""]
    return lines + table(list(keys(node, f"{group}."))) + [""]


def top_level_section(composed: DictConfig) -> list[str]:
    """The keys no group owns: the seed, the optimized metric, where data goes, the export."""
    rows = [row for row in keys(composed, "") if row.name.split(".")[0] in TOP_LEVEL]
    rows.sort(key=lambda row: TOP_LEVEL.index(row.name.split(".")[0]))
    return ["## Top-level keys", "", "Set as `key=value` (`seed=1`, `paths.data_dir=/data`).", ""] + table(rows)


def compose_option(group: str, option: str) -> DictConfig:
    """The config `python train.py group=option` runs, before Hydra's own keys are added."""
    return compose(config_name="train", overrides=[f"{group}={option}"])


def page() -> str:
    """The whole Markdown page: an introduction, one section per group, then the top-level keys."""
    register_configs()
    lines = [
        "# Config reference",
        "",
        f"<!-- Generated by `python -m sweeplab.config.reference`: do not edit; run `{COMMAND}`. -->",
        "",
        "Every key of every option of the config groups, as Hydra composes `python train.py group=option`:",
        "its type in the structured-config schema (`src/sweeplab/config/schema.py`,",
        "`src/sweeplab/config/optimizers.py`), its default, the values a run accepts (checked before anything",
        "runs: sweeplab.config.checks.RANGES) and the schema's comment on it. `???` marks a key",
        "that must be given; `${...}` is an interpolation, resolved when the run starts. Keys typed `Any` are",
        "not checked by the schema. Override any key with `group.key=value`.",
        "",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for group in GROUPS:
            lines += [f"## {group}", ""]
            for option in options(group):
                lines += option_section(group, option, compose_option(group, option))
        lines += top_level_section(compose(config_name="train"))
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the page; redirect it into docs/reference/config.md."""
    sys.stdout.write(page())


if __name__ == "__main__":
    main()
