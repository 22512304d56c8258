"""anyql: a structured-concurrency GraphQL server for Trio and asyncio."""

from __future__ import annotations

from ._resume import resume_point as resume_point
from .app import GraphQL as GraphQL
from .app import ServerHandle as ServerHandle
from .app import Settings as Settings
from .app import SettingsOverrides as SettingsOverrides
from .broadcast import Broadcast as Broadcast
from .context import Accepted as Accepted
from .context import Connection as Connection
from .context import Context as Context
from .dataloader import DataLoader as DataLoader
from .dataloader import loader as loader
from .dataloader import loader_scope as loader_scope
from .errors import AnyQLError as AnyQLError
from .errors import BroadcastError as BroadcastError
from .errors import ConfigError as ConfigError
from .errors import ConnectionClosed as ConnectionClosed
from .errors import ConnectionRejected as ConnectionRejected
from .errors import HTTPError as HTTPError
from .errors import LocalProtocolError as LocalProtocolError
from .errors import ProtocolError as ProtocolError
from .errors import RequestError as RequestError
from .errors import ResumeError as ResumeError
from .errors import SlowConsumer as SlowConsumer
from .errors import SourceError as SourceError
from .errors import SubscriberOverflow as SubscriberOverflow
from .limits import Limits as Limits
from .schema import Schema as Schema
from .transports.native import run as run
from .transports.native import serve as serve
from .types import Event as Event
from .types import HTTPRequest as HTTPRequest
from .types import HTTPResponse as HTTPResponse
from .types import HTTPStream as HTTPStream
from .types import OperationRequest as OperationRequest
from .types import RequestInfo as RequestInfo
from .types import SlowConsumerPolicy as SlowConsumerPolicy

__all__ = [
    "Accepted",
    "AnyQLError",
    "Broadcast",
    "BroadcastError",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "ConnectionRejected",
    "Context",
    "DataLoader",
    "Event",
    "GraphQL",
    "HTTPError",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPStream",
    "Limits",
    "LocalProtocolError",
    "OperationRequest",
    "ProtocolError",
    "RequestError",
    "RequestInfo",
    "ResumeError",
    "Schema",
    "ServerHandle",
    "Settings",
    "SettingsOverrides",
    "SlowConsumer",
    "SlowConsumerPolicy",
    "SourceError",
    "SubscriberOverflow",
    "loader",
    "loader_scope",
    "resume_point",
    "run",
    "serve",
]
