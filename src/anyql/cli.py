"""The ``anyql`` command: ``anyql serve module:app --host --port --backend trio|asyncio``.

Owns argument parsing, loading the app from ``module:attribute`` (with the working
directory on ``sys.path``), configuring it from outside the code (``--set``, ``--limit``,
``--config FILE``, ``--print-config``: flags over file over code, the app rebuilt from its
settings with the overrides applied) and what the command line sets up for the process it
owns: logging (INFO to stderr) and the garbage collector's generation-0 threshold (the
library itself never configures either). Imports ``transports.native`` and
``configuration``; must not import graphql or the session.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NoReturn, cast

from anyql.configuration import ConfigError, Overrides, apply, load_toml, render_toml
from anyql.transports.native import ServedApp, run

__all__ = ["main", "main_entry"]

#: Methods an object must have to be served.
_APP_METHODS = (
    "handle_http",
    "websocket_handshake",
    "select_subprotocol",
    "serve_websocket",
    "running",
)


#: Generation-0 threshold ``anyql serve`` gives the cyclic GC (CPython's own is 700). A
#: fan-out burst queues a few objects per subscriber at once; at 700 the collector runs so
#: often that it took 38-61% of the server's time (docs/performance.md).
GC_THRESHOLD = 50_000
#: The drain window ``anyql serve`` gives SIGTERM when none is configured (``Limits`` says
#: 0, which ``run``/``serve`` keep): the WebSockets and streams still open are closed over
#: this many seconds, not at once. Nothing waits for it when none is open. With the
#: default ``shutdown_grace`` the budget is 5 + 10 (+ 1.5 s watchdog margin), well inside
#: Kubernetes' 30 s ``terminationGracePeriodSeconds`` (docs/deployment.md).
SERVE_DRAIN_WINDOW = 5.0


class _UsageError(Exception):
    """A bad command line or target; ``main`` prints it and returns 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.format_usage()}{self.prog}: error: {message}")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="anyql", description="A structured-concurrency GraphQL server.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="serve an app with the native server")
    serve.add_argument("target", help="the app to serve, as module:attribute (e.g. chat:app)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port; 0 picks one (default 8000)")
    serve.add_argument(
        "--backend",
        choices=("trio", "asyncio"),
        default="trio",
        help="event loop to run on (default trio)",
    )
    serve.add_argument(
        "--permessage-deflate",
        action="store_true",
        help="accept WebSocket compression offers (off by default: CPU and memory per client);"
        " the same as --set permessage_deflate=true",
    )
    serve.add_argument(
        "--debug",
        action="store_true",
        help="unexpected errors reach clients unmasked: the same as --set debug=true",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="the level of the log on standard error (default info)",
    )
    serve.add_argument(
        "--no-access-log",
        action="store_true",
        help="do not log a line per request (the anyql.access logger)",
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="development: restart the server when a .py file under the working directory"
        " changes (needs the watchfiles package: pip install 'anyql[reload]')",
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a setting, e.g. --set debug=true (repeatable; lists comma-separated)",
    )
    serve.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a limit, e.g. --limit max_connections=20000 (repeatable)",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file: settings at the top level, limits in a [limits] table;"
        " flags override it, and it overrides the code",
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML and exit",
    )
    serve.add_argument(
        "--gc-threshold",
        type=_not_negative,
        default=GC_THRESHOLD,
        metavar="N",
        help=f"generation-0 threshold of Python's garbage collector (default {GC_THRESHOLD};"
        " 0 keeps the interpreter's own)",
    )
    return parser


def _not_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def load_app(target: str) -> ServedApp:
    """Import ``module:attribute`` with the working directory on ``sys.path``.

    Args:
        target: e.g. ``"chat:app"`` or ``"package.module:app"``.

    Returns:
        The object, once it looks like a servable app.

    Raises:
        _UsageError: the target is malformed, cannot be imported, or is not an app.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise _UsageError(f"anyql: target must look like module:attribute, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"anyql: cannot import module {module_name!r}: {exc}") from exc
    try:
        app = getattr(module, attribute)
    except AttributeError as exc:
        raise _UsageError(f"anyql: module {module_name!r} has no attribute {attribute!r}") from exc
    missing = [name for name in _APP_METHODS if not callable(getattr(app, name, None))]
    if not hasattr(app, "limits"):
        missing.append("limits")
    if missing:
        lacking = ", ".join(missing)
        raise _UsageError(f"anyql: {target} is not an anyql app (it lacks {lacking})")
    return cast(ServedApp, app)


def configure(app: ServedApp, args: argparse.Namespace) -> ServedApp:
    """The app rebuilt with the ``--config`` file's and the flags' overrides, if any.

    Raises:
        _UsageError: a bad override or file, or overrides for an app without settings.
    """
    try:
        overrides = _overrides(args)
        if args.permessage_deflate:
            overrides.settings["permessage_deflate"] = True
        if args.debug:
            overrides.settings["debug"] = True
        if not (overrides.settings or overrides.limits or args.print_config):
            return app
        settings = getattr(app, "settings", None)
        rebuild = getattr(app, "with_settings", None)
        if settings is None or rebuild is None:
            raise _UsageError(f"anyql: {args.target} has no settings to configure")
        return cast(ServedApp, rebuild(apply(settings, overrides)))
    except ConfigError as exc:
        raise _UsageError(f"anyql: {exc}") from exc


def _overrides(args: argparse.Namespace) -> Overrides:
    """What ``--config`` and ``--set``/``--limit`` replace (flags over file).

    Raises:
        ConfigError: a bad override or file.
    """
    overrides = load_toml(args.config) if args.config else Overrides()
    overrides.update(Overrides.from_assignments(args.set, args.limit))
    return overrides


def serve_drain_window(app: ServedApp, args: argparse.Namespace) -> float | None:
    """The drain window ``anyql serve`` uses: ``SERVE_DRAIN_WINDOW`` unless the window was
    configured (``--limit``, ``--config``, or a non-zero ``Limits.drain_window`` in code);
    None means the app's own."""
    if app.limits.drain_window or "drain_window" in _overrides(args).limits:
        return None
    return SERVE_DRAIN_WINDOW


def _served_settings(app: ServedApp, args: argparse.Namespace) -> Any:
    """The app's settings as ``anyql serve`` runs them: with its default drain window."""
    settings = app.settings  # type: ignore[attr-defined]
    window = serve_drain_window(app, args)
    if window is None:
        return settings
    return replace(settings, limits=replace(settings.limits, drain_window=window))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 after a clean shutdown, 2 for a usage error, 1 when the address
        cannot be bound.
    """
    try:
        args = _build_parser().parse_args(argv)
        app = configure(load_app(args.target), args)
        if args.reload and not args.print_config:
            return _serve_reloading(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if args.print_config:
        print(render_toml(_served_settings(app, args)), end="")
        return 0
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.no_access_log:
        logging.getLogger("anyql.access").disabled = True
    try:
        run(
            app,
            host=args.host,
            port=args.port,
            backend=args.backend,
            shutdown_watchdog=True,
            drain_window=serve_drain_window(app, args),
        )
    except OSError as exc:
        print(f"anyql: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _serve_reloading(argv: list[str]) -> int:
    """Run ``anyql`` with the same arguments minus ``--reload`` in a child process, and
    restart it whenever a ``.py`` file under the working directory changes.

    Raises:
        _UsageError: watchfiles is not installed.
    """
    try:
        from watchfiles import PythonFilter, run_process
    except ImportError:
        raise _UsageError(
            "anyql: --reload needs the watchfiles package: pip install 'anyql[reload]'"
        ) from None
    child = [sys.executable, "-m", "anyql", *(arg for arg in argv if arg != "--reload")]
    print(f"anyql: reloading on changes under {os.getcwd()}", file=sys.stderr)
    run_process(
        os.getcwd(),
        target=shlex.join(child),
        target_type="command",
        watch_filter=PythonFilter(),
        callback=lambda changes: print(
            f"anyql: {len(changes)} file(s) changed; restarting", file=sys.stderr
        ),
    )
    return 0


def main_entry() -> None:
    """Console-script entry point: ``sys.exit(main())``."""
    sys.exit(main())
