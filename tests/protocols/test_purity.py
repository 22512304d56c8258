"""Import rules (docs/design.md): the sans-IO core (the protocol machines; GraphQL over HTTP,
CORS and GraphiQL) imports neither anyio nor graphql; the core types are a leaf; only the
public face reaches into ``transports``; only ``protocol`` reaches into its private
modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import anyql.protocol

PROTOCOL_DIR = Path(anyql.protocol.__file__).parent
FORBIDDEN = ("anyio", "graphql", "trio", "asyncio", "sniffio")
#: What the protocol package may import from the rest of anyql.
ALLOWED_RELATIVE = {"errors", "types"}
SRC = PROTOCOL_DIR.parent
#: Outside ``transports/``, the modules that may import it: the public face and the ASGI
#: entry point of the app.
TRANSPORT_IMPORTERS = {"__init__.py", "cli.py", "app.py"}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every (module, relative level) imported anywhere in ``path``, nested ones included."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def protocol_modules() -> list[Path]:
    modules = sorted(PROTOCOL_DIR.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "transport_ws.py", "legacy_ws.py"}
    return modules


def test_protocol_modules_import_neither_anyio_nor_graphql() -> None:
    for path in protocol_modules():
        for module, level in imports_of(path):
            top = module.split(".")[0]
            if level == 0:
                assert top not in FORBIDDEN, f"{path.name} imports {module}"
                assert top != "anyql", f"{path.name} imports {module} absolutely"
            elif level == 2:  # from ..x import y: only the listed siblings of protocol/
                assert top in ALLOWED_RELATIVE, f"{path.name} imports ..{module}"
            else:
                assert level == 1, f"{path.name} reaches outside anyql: {'.' * level}{module}"


def test_the_checker_sees_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import anyio\n    from graphql import parse\n")
    assert [m for m, _ in imports_of(sample)] == ["anyio", "graphql"]


def assert_loads_alone(modules: str, forbidden: tuple[str, ...]) -> None:
    """Import ``modules`` in a fresh interpreter, under a stub ``anyql`` package, and check
    that none of ``forbidden`` got imported.

    This does not run ``anyql/__init__.py``, which may import the whole server.
    """
    script = f"""
import importlib, sys, types
package = types.ModuleType("anyql")
package.__path__ = [{str(SRC)!r}]
sys.modules["anyql"] = package
import {modules}
for name in {forbidden!r}:
    assert name not in sys.modules, name
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_loading_the_protocol_modules_alone_pulls_in_neither() -> None:
    """Load each protocol module from its file, under a stub ``anyql`` package."""
    assert_loads_alone(
        "anyql.protocol, anyql.protocol.transport_ws, anyql.protocol.legacy_ws",
        ("anyio", "graphql", "trio", "sniffio"),
    )


#: The sans-IO HTTP side (rule 2): GraphQL over HTTP, CORS, GraphiQL, the media types.
HTTP_CORE = ("http.py", "cors.py", "_graphiql.py", "_media.py")
HTTP_FORBIDDEN = ("anyio", "graphql", "trio", "h11", "wsproto")


@pytest.mark.parametrize("module", HTTP_CORE)
def test_module_imports_neither_anyio_nor_graphql(module: str) -> None:
    imported = {name.split(".")[0] for name, _ in imports_of(SRC / module)}
    assert not imported & set(HTTP_FORBIDDEN)


def test_loading_the_http_modules_alone_pulls_in_neither() -> None:
    """GraphQL over HTTP, CORS and GraphiQL load without anyio, graphql, h11 or wsproto."""
    assert_loads_alone(
        ", ".join(f"anyql.{name.removesuffix('.py')}" for name in HTTP_CORE),
        (*HTTP_FORBIDDEN, "sniffio"),
    )


def absolute_imports(path: Path) -> set[str]:
    """The anyql modules ``path`` imports, as absolute dotted names."""
    package = ["anyql", *path.relative_to(SRC).parent.parts]
    found: set[str] = set()
    for module, level in imports_of(path):
        if level == 0:
            if module.split(".")[0] == "anyql":
                found.add(module)
            continue
        base = package[: len(package) - (level - 1)]
        found.add(".".join([*base, module] if module else base))
    return found


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_the_core_types_import_only_the_standard_library() -> None:
    path = SRC / "types.py"
    for module, level in imports_of(path):
        assert level == 0, f"types.py imports .{module}"
        assert module.split(".")[0] in sys.stdlib_module_names, f"types.py imports {module}"


def test_only_the_public_face_imports_the_transports() -> None:
    for path in source_files():
        relative = path.relative_to(SRC)
        if relative.parts[0] in ("transports", "testing") or str(relative) in TRANSPORT_IMPORTERS:
            continue
        for module in absolute_imports(path):
            assert not module.startswith("anyql.transports"), f"{relative} imports {module}"


def test_only_the_protocol_package_imports_its_private_modules() -> None:
    for path in source_files():
        relative = path.relative_to(SRC)
        if relative.parts[0] == "protocol":
            continue
        for module in absolute_imports(path):
            parts = module.split(".")
            private = len(parts) > 2 and parts[1] == "protocol" and parts[2].startswith("_")
            assert not private, f"{relative} imports {module}"


def test_the_rule_checkers_resolve_relative_imports() -> None:
    sample = SRC / "transports" / "native.py"
    assert "anyql.types" in absolute_imports(sample)
    assert "anyql.transports._native_http" in absolute_imports(sample)


def test_the_drivers_depend_on_ports_not_on_the_app() -> None:
    """The session driver and the transports name ``ports``, never ``anyql.app``."""
    drivers = [SRC / "session.py", *sorted((SRC / "transports").glob("*.py"))]
    for path in drivers:
        imported = absolute_imports(path)
        assert "anyql.app" not in imported, f"{path.relative_to(SRC)} imports the app"
        annotated = re.search(r"[:\[|]\s*GraphQL\b", path.read_text(encoding="utf-8"))
        assert annotated is None, f"{path.relative_to(SRC)} names the GraphQL class"
