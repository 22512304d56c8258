"""One configuration surface: ``Settings`` and ``Limits`` checked on construction,
``GraphQL(schema, settings=, limits=, **overrides)``, and ``anyql serve`` configured from
flags and a TOML file (flags over file over code), with ``--print-config``.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import anyio
import pytest

from anyql import GraphQL, Limits, Schema, Settings
from anyql.app import SettingsOverrides
from anyql.cli import main
from anyql.configuration import SETTING_KINDS
from anyql.testing import TestClient
from tests.hardening.clients import serving
from tests.hardening.test_deflate import deflate_client

SDL = "type Query { hello: String! }"


def make_schema() -> Schema:
    schema = Schema(SDL)
    schema.field("Query.hello")(lambda root, info: "world")
    return schema


# --- Limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_body_bytes": -5}, "Limits.max_body_bytes must be at least 1"),
        ({"max_connections": 0}, "Limits.max_connections must be at least 1"),
        ({"max_depth": 2.5}, "Limits.max_depth must be a whole number"),
        ({"max_operations": True}, "Limits.max_operations must be a whole number"),
        ({"operation_timeout": -1}, "Limits.operation_timeout must be more than 0 seconds"),
        ({"operation_timeout": 0}, "Limits.operation_timeout must be more than 0 seconds"),
        ({"pong_timeout": math.nan}, "Limits.pong_timeout must be a number of seconds"),
        ({"header_timeout": "10"}, "Limits.header_timeout must be a number of seconds"),
        ({"cleanup_grace": -0.1}, "Limits.cleanup_grace must be 0 or more seconds"),
        ({"cleanup_grace": 20.0}, "Limits.cleanup_grace (20.0) must not exceed"),
    ],
)
def test_a_wrong_limit_fails_at_construction_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Limits(**changes)


def test_zero_and_infinity_are_accepted_where_they_mean_something() -> None:
    limits = Limits(keep_alive_interval=0, cleanup_grace=0, operation_timeout=math.inf)
    assert limits.keep_alive_interval == 0
    assert limits.operation_timeout == math.inf


@pytest.mark.parametrize("name", ["shutdown_grace", "drain_delay", "drain_window"])
def test_the_times_of_the_shutdown_budget_must_be_finite(name: str) -> None:
    """Together they bound how long a stop may take: infinity would never end a drain nor
    let the watchdog end the process (its thread died of OverflowError in ``select``)."""
    with pytest.raises(ValueError, match=f"Limits.{name} must be a finite number of seconds"):
        Limits(**{name: math.inf})
    assert getattr(Limits(**{name: 1e10}), name) == 1e10  # large but finite: accepted


def test_every_limit_says_which_servers_enforce_it() -> None:
    limits = Limits()
    assert {limits.enforced_by(item.name) for item in fields(Limits)} == {"all", "native"}
    assert limits.enforced_by("max_body_bytes") == "all"
    assert limits.enforced_by("header_timeout") == "native"
    assert Limits().asgi_inert() == ()
    assert Limits(header_timeout=3.0, max_depth=4).asgi_inert() == ("header_timeout",)


# --- Settings and GraphQL(...) --------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slow_consumer": "bogus"}, "Settings.slow_consumer must be one of"),
        ({"shared_slow_consumer": "never"}, "Settings.shared_slow_consumer must be one of"),
        ({"cors_origins": "https://a.example"}, "Settings.cors_origins must be a tuple"),
        ({"allowed_origins": (1,)}, "Settings.allowed_origins must hold strings only"),
        ({"debug": 1}, "Settings.debug must be True or False"),
        ({"mask_errors": "yes"}, "Settings.mask_errors must be True, False or None"),
        ({"subscription_protocols": ("mqtt",)}, "Settings.subscription_protocols: unknown"),
        ({"path": "graphql"}, "Settings.path must start with '/'"),
        ({"path": "/graphql", "readiness_path": "/graphql/"}, "readiness_path must differ"),
        ({"readiness_path": "/"}, "readiness_path must differ"),  # path=None answers "/"
        ({"limits": {"max_connections": 2}}, r"write limits=Limits\(max_connections=2\)"),
    ],
)
def test_a_wrong_setting_fails_at_construction_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**changes)
    with pytest.raises(ValueError, match=message):
        GraphQL(make_schema(), **changes)


def test_lists_are_accepted_where_tuples_belong() -> None:
    settings = Settings(cors_origins=["https://a.example"], allowed_origins=["https://b"])  # type: ignore[arg-type]
    assert settings.cors_origins == ("https://a.example",)
    assert settings.allowed_origins == ("https://b",)


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="bogus"):
        GraphQL(make_schema(), bogus=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="settings= takes a Settings"):
        GraphQL(make_schema(), settings={"debug": True})  # type: ignore[arg-type]


def test_settings_and_limits_are_the_base_and_keywords_override_single_fields() -> None:
    base = Settings(debug=True, batching=True, limits=Limits(max_depth=3))
    app = GraphQL(make_schema(), settings=base, batching=False, limits=Limits(max_depth=5))
    assert app.settings.debug is True  # from the base
    assert app.settings.batching is False  # overridden
    assert app.limits == Limits(max_depth=5)
    assert base.batching is True  # the base is frozen, not changed


def test_asdict_of_settings_no_longer_turns_limits_into_a_dict_silently() -> None:
    settings = Settings(limits=Limits(max_depth=4))
    with pytest.raises(ValueError, match=r"Settings\.limits must be a Limits"):
        GraphQL(make_schema(), **asdict(settings))


def test_the_overrides_type_names_every_setting_but_limits() -> None:
    """``SettingsOverrides`` is what mypy and IDEs see: it must not drift from Settings."""
    overridable = set(SettingsOverrides.__optional_keys__)
    assert overridable == {item.name for item in fields(Settings)} - {"limits"}
    # every scalar setting can be set from the command line; the rest are code-only
    assert set(SETTING_KINDS) <= overridable
    assert overridable - set(SETTING_KINDS) == {"fallback", "validation_rules"}


@pytest.mark.anyio
async def test_with_settings_rebuilds_everything_derived_from_them() -> None:
    app = GraphQL(make_schema())
    closed = app.with_settings(Settings(introspection=False))
    assert closed.schema is app.schema
    async with TestClient(closed) as client:
        result = await client.query("{ __schema { queryType { name } } }")
    assert "errors" in result  # the engine was built with introspection off
    async with TestClient(app) as client:
        result = await client.query("{ __schema { queryType { name } } }")
    assert result == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


@pytest.mark.anyio
async def test_the_app_in_the_users_module_reaches_the_server_of_its_rebuilt_copy() -> None:
    """``anyql serve --limit ...`` serves a rebuilt copy; code that holds the module's app
    (``await app.server.drain()``) must reach the server all the same (it got None)."""
    from anyql.cli import _build_parser, configure

    app = GraphQL(make_schema())
    args = _build_parser().parse_args(["serve", "x:app", "--limit", "max_depth=9"])
    served = configure(app, args)
    assert served is not app and app.server is None
    async with served.running() as handle:  # type: ignore[attr-defined]
        assert app.server is handle
    assert app.server is None


# --- permessage_deflate and the ASGI path -----------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("enabled", [True, False])
async def test_permessage_deflate_is_a_setting_the_native_server_follows(enabled: bool) -> None:
    app = GraphQL(make_schema(), permessage_deflate=enabled)
    async with serving(app) as port, deflate_client(port) as (_, agreed_on):
        assert agreed_on == (["permessage-deflate"] if enabled else [])


@pytest.mark.anyio
async def test_asgi_warns_once_at_startup_for_each_setting_it_cannot_enforce(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = GraphQL(
        make_schema(),
        limits=Limits(header_timeout=3.0, pong_timeout=2.0, max_depth=4),
        permessage_deflate=True,
    )
    to_app, app_receives = anyio.create_memory_object_stream[dict[str, Any]](10)
    app_sends, from_app = anyio.create_memory_object_stream[dict[str, Any]](10)

    async def send(message: dict[str, Any]) -> None:
        await app_sends.send(message)

    with caplog.at_level(logging.WARNING, logger="anyql"):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                app, {"type": "lifespan", "asgi": {"version": "3.0"}}, app_receives.receive, send
            )
            await to_app.send({"type": "lifespan.startup"})
            assert (await from_app.receive())["type"] == "lifespan.startup.complete"
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
    warned = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warned) == 3
    assert any("Limits.header_timeout=3.0" in message for message in warned)
    assert any("Limits.pong_timeout=2.0" in message for message in warned)
    assert any("permessage_deflate" in message for message in warned)


# --- anyql serve -----------------------------------------------------------------


def effective(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["serve", "examples.chat:app", *argv, "--print-config"]) == 0
    printed: dict[str, Any] = tomllib.loads(capsys.readouterr().out)
    return printed


def test_print_config_shows_every_scalar_setting_and_limit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = effective([], capsys)
    assert config["debug"] is False
    assert config["slow_consumer"] == "block"
    assert config["subscription_protocols"] == ["graphql-transport-ws", "graphql-ws"]
    # `anyql serve` drains over SERVE_DRAIN_WINDOW unless a window is configured.
    assert config["limits"] == {**asdict(Limits()), "drain_window": 5.0}


def test_print_config_shows_the_drain_window_serve_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert effective([], capsys)["limits"]["drain_window"] == 5.0
    assert effective(["--limit", "drain_window=0"], capsys)["limits"]["drain_window"] == 0
    assert effective(["--limit", "drain_window=2"], capsys)["limits"]["drain_window"] == 2


def test_flags_override_the_file_which_overrides_the_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "anyql.toml"
    file.write_text(
        'debug = true\ncors_origins = ["https://a.example"]\n'
        "[limits]\nmax_depth = 7\nmax_connections = 20000\noperation_timeout = 2.5\n"
    )
    config = effective(
        [
            "--config",
            str(file),
            "--limit",
            "max_depth=9",
            "--set",
            "cors_origins=https://b,https://c",
            "--permessage-deflate",
        ],
        capsys,
    )
    assert config["debug"] is True  # file
    assert config["cors_origins"] == ["https://b", "https://c"]  # flag over file
    assert config["permessage_deflate"] is True
    assert config["limits"]["max_depth"] == 9  # flag over file
    assert config["limits"]["max_connections"] == 20000  # file over code
    assert config["limits"]["operation_timeout"] == 2.5
    assert config["limits"]["max_tokens"] == Limits().max_tokens  # code


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "max_connections=-1"], "Limits.max_connections must be at least 1"),
        (["--limit", "max_connections=many"], "max_connections takes a whole number"),
        (["--limit", "nope=1"], "unknown limit 'nope'"),
        (["--set", "max_depth=3"], "max_depth is a limit: use --limit"),
        (["--set", "fallback=x"], "unknown or code-only setting 'fallback'"),
        (["--set", "debug=maybe"], "debug takes true or false"),
        (["--set", "slow_consumer=bogus"], "Settings.slow_consumer must be one of"),
        (["--set", "debug"], "--set takes NAME=VALUE"),
        (["--limit", "cleanup_grace=60"], "must not exceed Limits.shutdown_grace"),
        (["--config", "/nonexistent/anyql.toml"], "cannot read /nonexistent/anyql.toml"),
    ],
)
def test_bad_configuration_exits_2_naming_what_is_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "examples.chat:app", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_a_file_with_a_wrong_value_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "anyql.toml"
    file.write_text("[limits]\nmax_depth = 2.5\n")
    assert main(["serve", "examples.chat:app", "--config", str(file)]) == 2
    assert "max_depth takes a whole number" in capsys.readouterr().err


def test_an_app_without_settings_cannot_be_configured(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "tests.fake_app:app", "--set", "debug=true"]) == 2
    assert "has no settings to configure" in capsys.readouterr().err


def test_debug_is_a_flag_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    assert effective(["--debug"], capsys)["debug"] is True


def test_log_level_must_be_a_known_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "examples.chat:app", "--log-level", "loud"]) == 2
    assert "invalid choice: 'loud'" in capsys.readouterr().err


@pytest.mark.anyio
async def test_the_native_server_warns_that_it_ignores_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never called by the native server")

    app = GraphQL(make_schema(), path="/graphql", fallback=fallback)
    with caplog.at_level(logging.WARNING, logger="anyql"):
        async with serving(app):
            pass
    assert any("fallback= ASGI app is served under ASGI only" in r.message for r in caplog.records)
