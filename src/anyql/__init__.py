"""anyql: a structured-concurrency GraphQL server for Trio and asyncio."""

from __future__ import annotations

from .app import GraphQL as GraphQL
from .app import Settings as Settings
from .broadcast import Broadcast as Broadcast
from .context import Context as Context
from .errors import ConnectionRejected as ConnectionRejected
from .limits import Limits as Limits
from .schema import Schema as Schema
from .transports.native import run as run
from .transports.native import serve as serve

__all__ = [
    "Broadcast",
    "ConnectionRejected",
    "Context",
    "GraphQL",
    "Limits",
    "Schema",
    "Settings",
    "run",
    "serve",
]
