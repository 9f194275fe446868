"""Secrets kept out of MLflow and the terminal: the values of secret-looking keys, and credentials in URIs.

A config key that contains password, token, secret or api_key (any case, anywhere in its dotted name)
has its value shown as `***`, and so do the `user:password@` of a URI. The one home of that rule: params,
tags, the uploaded `.hydra/` configs and the lines sweeplab prints all pass through here. The run dir
keeps what the user typed (Hydra writes it before any of this runs).
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sweeplab.core.vocabulary import HYDRA_OVERRIDES_TAG, OVERRIDES_TAG, RUN_DIR_TAG, SWEEP_DIR_TAG

MASK = "***"
SECRET_KEY = re.compile(r"password|token|secret|api_key", re.IGNORECASE)
URI_CREDENTIALS = re.compile(r"(?<=://)[^/@\s'\"]+@")  # the user:password@ of scheme://user:password@host
# `key=value` inside free text (a Hydra override, override_dirname's `a=1,b=2`, a URL's query string).
ASSIGNMENT = re.compile(r"(?P<key>[\w.+~-]+)=(?P<value>[^\s,&'\"]*)")


def is_secret(key: str) -> bool:
    return bool(SECRET_KEY.search(key))


def masked_text(text: str) -> str:
    """Free text as it may be shown: URIs without credentials, secret-looking `key=value`s without values."""
    text = URI_CREDENTIALS.sub(f"{MASK}@", text)
    return ASSIGNMENT.sub(lambda match: f"{match['key']}={MASK}" if is_secret(match["key"]) else match[0], text)


def masked_override(override: str) -> str:
    """One Hydra override: a secret key's whole value goes, spaces and all (`'db.password=a b'`)."""
    key, equals, _ = override.partition("=")
    return f"{key}={MASK}" if equals and is_secret(key) else masked_text(override)


def masked(value: Any, key: str = "") -> Any:
    """A config tree (or any YAML document) with every secret-looking key's value and every string masked."""
    if is_secret(key):
        return MASK
    if isinstance(value, Mapping):
        return {name: masked(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return masked_override(value) if isinstance(value, str) else value


def masked_params(params: dict[str, str]) -> dict[str, str]:
    """Dotted params: a key is secret if any part of it is (`db.secrets.user` too)."""
    return {key: MASK if is_secret(key) else masked_text(value) for key, value in params.items()}


def masked_tags(tags: dict[str, str]) -> dict[str, str]:
    return {key: masked_tag(key, value) for key, value in tags.items()}


def masked_tag(key: str, value: str) -> str:
    """The overrides tag override by override (its values may be quoted, with spaces), others as text.

    Folders stay as they are: resume, export and a sweep's parent find their runs by them.
    """
    if key in (RUN_DIR_TAG, SWEEP_DIR_TAG):
        return value
    if key in (OVERRIDES_TAG, HYDRA_OVERRIDES_TAG):
        return shlex.join(map(masked_override, shlex.split(value)))
    return masked_text(value)


def masked_yaml_documents(folder: Path) -> dict[str, str] | None:
    """The YAML files of `folder` by name, masked; None when none of them holds a secret."""
    documents = {path.name: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))}
    if all(masked(document) == document for document in documents.values()):
        return None
    return {name: yaml.safe_dump(masked(document), sort_keys=False) for name, document in documents.items()}


class MaskingFilter(logging.Filter):
    """Log lines masked as they are written (conf/train.yaml puts it on Hydra's and the job's handlers):
    Hydra's launcher logs each job's overrides, secrets and all."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = masked_text(record.getMessage()), ()
        return True
