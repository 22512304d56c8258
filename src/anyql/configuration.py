"""Configuration from outside the code: ``name=value`` overrides, TOML files, and the
effective configuration printed back as TOML.

Owns ``ConfigError``, ``Overrides``, ``load_toml``, ``apply`` and ``render_toml``. Works on
any frozen ``Settings``/``Limits`` pair through ``dataclasses`` alone, so it imports only
the standard library and ``limits``; the command line (``cli.py``) is its user. Scalars
only: callables (validation rules, the fallback app, a GraphiQL page function) and the
hooks are set in code. A TOML file holds settings at the top level and limits in a
``[limits]`` table; flags win over the file, and the file over the code.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from .errors import ConfigError
from .limits import Limits

__all__ = ["ConfigError", "Overrides", "apply", "load_toml", "render_toml"]

#: Settings that can be set from outside the code, by the kind of value they take.
SETTING_KINDS: Final[Mapping[str, str]] = {
    "path": "optional str",
    "subscription_protocols": "strings",
    "graphiql": "bool",
    "graphiql_assets_url": "optional str",
    "batching": "bool",
    "introspection": "bool",
    "mask_errors": "optional bool",
    "debug": "bool",
    "slow_consumer": "str",
    "shared_slow_consumer": "str",
    "allowed_origins": "strings",
    "check_origin": "bool",
    "cors_origins": "strings",
    "cors_allow_credentials": "bool",
    "cors_max_age": "int",
    "cors_allow_headers": "strings",
    "require_preflight_header": "bool",
    "permessage_deflate": "bool",
    "cancel_mutations_on_disconnect": "bool",
    "readiness_path": "optional str",
    "trusted_proxies": "int",
    "graphiql_sse": "bool",
}
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
_NONE: Final = frozenset({"none", "null", ""})


@dataclass
class Overrides:
    """Settings and limits to replace, by field name, with already-typed values."""

    settings: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)

    def update(self, other: Overrides) -> None:
        """Let ``other`` win over what is here."""
        self.settings.update(other.settings)
        self.limits.update(other.limits)

    @classmethod
    def from_assignments(
        cls, settings: Iterable[str] = (), limits: Iterable[str] = ()
    ) -> Overrides:
        """Parse ``name=value`` texts (the command line's ``--set`` and ``--limit``).

        Raises:
            ConfigError: not ``name=value``, an unknown or code-only name, or a value of
                the wrong kind.
        """
        overrides = cls()
        for text in settings:
            name, value = _split(text, "--set")
            overrides.settings[name] = _setting_value(name, value, from_text=True)
        for text in limits:
            name, value = _split(text, "--limit")
            overrides.limits[name] = _limit_value(name, value, from_text=True)
        return overrides


def load_toml(path: str | Path) -> Overrides:
    """Read settings (top level) and limits (the ``[limits]`` table) from a TOML file.

    Raises:
        ConfigError: the file cannot be read or parsed, or holds an unknown name or a
            value of the wrong kind.
    """
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    overrides = Overrides()
    limits = document.pop("limits", {})
    if not isinstance(limits, dict):
        raise ConfigError(f"{path}: 'limits' must be a table ([limits])")
    for name, value in document.items():
        overrides.settings[name] = _setting_value(name, value, from_text=False)
    for name, value in limits.items():
        overrides.limits[name] = _limit_value(name, value, from_text=False)
    return overrides


def apply(settings: Any, overrides: Overrides) -> Any:
    """A new frozen settings object with ``overrides`` applied (validated on construction).

    Raises:
        ConfigError: the result fails the checks of ``Settings`` or ``Limits``.
    """
    try:
        limits = replace(settings.limits, **overrides.limits)
        return replace(settings, **overrides.settings, limits=limits)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from error


def render_toml(settings: Any) -> str:
    """The scalar settings and every limit as TOML; code-only values as comments."""
    lines = ["# anyql: effective configuration (code, then --config file, then flags)"]
    for item in fields(settings):
        value = getattr(settings, item.name)
        if item.name == "limits":
            continue
        if item.name not in SETTING_KINDS or (callable(value) and not isinstance(value, bool)):
            lines.append(f"# {item.name}: set in code ({_describe(value)})")
        elif value is None:
            lines.append(f"# {item.name}: not set")
        else:
            lines.append(f"{item.name} = {_toml(value)}")
    lines += ["", "[limits]"]
    for item in fields(settings.limits):
        lines.append(f"{item.name} = {_toml(getattr(settings.limits, item.name))}")
    return "\n".join(lines) + "\n"


def _split(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"{flag} takes NAME=VALUE, not {text!r}")
    return name.strip(), value.strip()


def _setting_value(name: str, value: Any, *, from_text: bool) -> Any:
    kind = SETTING_KINDS.get(name)
    if kind is None:
        if name in _LIMIT_NAMES:
            raise ConfigError(f"{name} is a limit: use --limit {name}=... or [limits]")
        known = ", ".join(sorted(SETTING_KINDS))
        raise ConfigError(f"unknown or code-only setting {name!r}; settable: {known}")
    optional = kind.startswith("optional ")
    if optional and (value is None or (from_text and str(value).lower() in _NONE)):
        return None
    kind = kind.removeprefix("optional ")
    if kind == "bool":
        return _boolean(name, value, from_text)
    if kind == "int":
        return _number(name, value, from_text, int)
    if kind == "strings":
        if from_text and isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{name} takes a list of strings, not {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{name} takes a string, not {value!r}")
    return value


def _limit_value(name: str, value: Any, *, from_text: bool) -> Any:
    kind = _LIMIT_NAMES.get(name)
    if kind is None:
        known = ", ".join(sorted(_LIMIT_NAMES))
        raise ConfigError(f"unknown limit {name!r}; limits: {known}")
    return _number(name, value, from_text, int if kind == "int" else float)


def _boolean(name: str, value: Any, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ConfigError(f"{name} takes true or false, not {value!r}")


def _number(name: str, value: Any, from_text: bool, kind: type[int] | type[float]) -> Any:
    if from_text and isinstance(value, str):
        try:
            return kind(value.replace("_", ""))
        except ValueError:
            pass
    elif (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (kind is float or isinstance(value, int))  # never 2.5 for a whole number
    ):
        return kind(value)
    wanted = "a whole number" if kind is int else "a number of seconds"
    raise ConfigError(f"{name} takes {wanted}, not {value!r}")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _describe(value: Any) -> str:
    if value in ((), None):
        return "none"
    return getattr(value, "__qualname__", None) or type(value).__name__


_LIMIT_NAMES: Final[Mapping[str, str]] = {
    item.name: "int" if item.type in ("int", int) else "float" for item in fields(Limits)
}
