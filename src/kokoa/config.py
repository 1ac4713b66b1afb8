"""Configuration files (TOML) and their validation, shared by the gateway and the edge.

Every error names the file and the key, so an operator can fix it at once.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from kokoa.wire import Limits


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message says where and why."""


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(allowed))}"
        )


def get_str(
    table: dict, key: str, where: str, default: str | None = None, required: bool = False
) -> str | None:
    value = table.get(key, default)
    if value is None:
        if required:
            raise ConfigError(f"{where}: {key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value


def get_str_list(table: dict, key: str, where: str) -> list[str] | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} must be a string or a list of strings")
    return value


def get_number(table: dict, key: str, where: str, default: float, minimum: float = 0) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
        raise ConfigError(f"{where}: {key} must be a number greater than {minimum:g}")
    return value


def parse_limits(table: dict | None, where: str) -> Limits:
    """The [limits] table: any field of kokoa.wire.Limits."""
    if not table:
        return Limits()
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    names = {f.name for f in fields(Limits)}
    check_keys(table, names, where)
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number")
    try:
        return Limits(**table)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_host_port(value: str, where: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string HOST:PORT")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {value!r} is not HOST:PORT with a port from 1 to 65535")
    return host, int(port)
