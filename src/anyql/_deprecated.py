"""Old public names that keep working with a ``DeprecationWarning``.

Owns ``renamed``, which builds a module ``__getattr__``. Imports the standard library only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["renamed"]


def renamed(module: str, names: Mapping[str, tuple[str, object]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``names``: old name -> (new name, the object).

    Args:
        module: the module's dotted name, for the warning and the error.
        names: the renamed objects.

    Returns:
        The ``__getattr__`` to assign in the module.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            new, value = names[name]
            warnings.warn(
                f"{module}.{name} is now {module}.{new}", DeprecationWarning, stacklevel=2
            )
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
