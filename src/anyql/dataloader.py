"""Batching and per-request caching of loads: ``DataLoader`` on anyio, and its scopes.

Owns ``DataLoader``, ``loader()``, ``LoaderScope`` and ``loader_scope()``. Theory of
operation: a scope is what one operation (or one event of a subscription) shares. The
execution layer makes one and puts it in a context variable (never in the user's context
object) around each execution; ``loader(info, batch_load)`` finds the loader for
``batch_load`` in the current scope, making it on first use. ``load(key)`` registers the
key at once, synchronously, and returns an awaitable. The first key of a new batch starts
that batch's dispatch task in the scope's task group (or, when the scope has no task group
yet because the execution has not awaited anything, as soon as it gets one): the task
waits until the scope has made no new load for ``idle_checkpoints`` scheduler checkpoints,
or for ``max_delay`` seconds, whichever comes first, then calls ``batch_load`` once per
``max_batch_size`` chunk, chunks concurrently, and wakes the waiters. A waiter that is
cancelled leaves; when the last one leaves a batch still loading, the load is cancelled
and nothing of it is cached. When the scope ends, every task it started is cancelled:
nothing outlives the request. Imports anyio only.
"""

from __future__ import annotations

import functools
import inspect
import logging
import warnings
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["DataLoader", "LoaderScope", "loader", "loader_scope"]

logger = logging.getLogger("anyql.dataloader")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchLoad = Callable[[list[Any]], "Awaitable[Sequence[Any]] | Sequence[Any]"]

#: The scope of the running execution (None outside any).
_current: ContextVar[LoaderScope | None] = ContextVar("anyql_loader_scope", default=None)
#: Code objects of batch functions already warned about (made anew on every call).
_warned: set[object] = set()


class _Usage:
    """Whether any load was ever made in this process: until then an execution opens no
    task group for its scope (an app without loaders pays nothing for them)."""

    loads_made = False


_usage = _Usage()

_NO_SCOPE = (
    "no loader scope here: anyql.loader() and DataLoader.load() work inside an operation's"
    " execution (a resolver, or a subscription's source); elsewhere, open one with"
    " `async with anyql.loader_scope():`"
)


class LoaderScope:
    """What the loads of one execution share: its loaders, a count of loads and the task
    group their batches run in. Made by the execution layer; users need ``loader_scope``.
    """

    __slots__ = (
        "_by_key",
        "_code_seen",
        "_open",
        "_started",
        "_task_group",
        "_waiting",
        "closed",
        "loads",
    )

    def __init__(self) -> None:
        self._by_key: dict[Hashable, DataLoader[Any, Any]] = {}
        self._code_seen: dict[object, object] = {}
        #: Each loader's batch still taking keys in this scope.
        self._open: dict[DataLoader[Any, Any], _Batch] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._waiting: list[_Batch] = []
        #: Dispatch tasks started in the task group (none: nothing to cancel at the end).
        self._started = 0
        #: Loads registered in this scope so far (the dispatch waits for it to stop moving).
        self.loads = 0
        #: The execution ended: a load now is an error, not a wait for ever.
        self.closed = False

    def _start(self, batch: _Batch) -> None:
        if self._task_group is None:
            self._waiting.append(batch)  # the task group starts it, or its first awaiter
        else:
            self._started += 1
            batch.started = True
            self._task_group.start_soon(batch.dispatch)

    def _run_here(self, batch: _Batch) -> bool:
        """Whether the awaiting task must run ``batch``'s dispatch itself: no task group will
        (the execution began before this process made its first load)."""
        if batch.started or self._task_group is not None:
            return False
        batch.started = True
        self._waiting.remove(batch)
        return True

    def close(self) -> None:
        """The execution ended: fail what never got a task, and drop the scope's loaders
        and their values (nothing cached outlives the operation it was loaded for)."""
        self.closed = True
        waiting, self._waiting = self._waiting, []
        for batch in waiting:
            batch.fail(RuntimeError("the operation this load belongs to has ended"))
        for owned in self._by_key.values():
            owned.clear_all()
        self._by_key.clear()
        self._open.clear()

    def running(self) -> AbstractAsyncContextManager[LoaderScope]:
        """Give the scope a task group while the body runs; cancel what is left after it.

        Until the process made its first load, nothing: an app without loaders pays no
        task group (a batch of a scope without one is run by its first awaiting load).
        An exception of the body leaves as it is, never inside an exception group (the
        batches never raise: their errors go to their waiters).
        """
        if not _usage.loads_made:
            return _NoTaskGroup(self)
        return self._with_task_group()

    @asynccontextmanager
    async def _with_task_group(self) -> AsyncIterator[LoaderScope]:
        failure: BaseException | None = None
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            waiting, self._waiting = self._waiting, []
            for batch in waiting:
                self._started += 1
                batch.started = True
                task_group.start_soon(batch.dispatch)
            try:
                yield self
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as error:
                failure = error
            finally:
                self._task_group = None
                if self._started:
                    task_group.cancel_scope.cancel()
        if failure is not None:
            raise failure

    def activate(self) -> Any:
        """Make this the current scope; returns the token for ``deactivate``."""
        return _current.set(self)

    def deactivate(self, token: Any) -> None:
        """Restore the scope that was current before ``activate``; this one is closed."""
        _current.reset(token)
        self.close()

    def _loader_for(
        self, batch_load: BatchLoad, key: Hashable | None, options: dict[str, Any]
    ) -> DataLoader[Any, Any]:
        lookup = batch_load if key is None else key
        found = self._by_key.get(lookup)
        if found is None:
            if key is None:
                self._check_made_on_the_fly(batch_load)
            found = DataLoader(batch_load, **options)
            self._by_key[lookup] = found
        return found

    def _check_made_on_the_fly(self, batch_load: BatchLoad) -> None:
        made = batch_load.func if isinstance(batch_load, functools.partial) else batch_load
        code = getattr(made, "__code__", None)
        if code is None:
            return
        first = self._code_seen.setdefault(code, batch_load)
        if first is not batch_load and code not in _warned:
            _warned.add(code)
            name = getattr(batch_load, "__qualname__", batch_load)
            warnings.warn(
                f"anyql.loader() got a new batch function {name!r}"
                " for every call, so its loads never batch: define it once (at module level)"
                " or pass key= to name its loader",
                RuntimeWarning,
                stacklevel=4,
            )


class _NoTaskGroup:
    """``LoaderScope.running()`` before any load was made: nothing to enter."""

    __slots__ = ("_scope",)

    def __init__(self, scope: LoaderScope) -> None:
        self._scope = scope

    async def __aenter__(self) -> LoaderScope:
        return self._scope

    async def __aexit__(self, *exc: object) -> None:
        return None


def current_scope() -> LoaderScope:
    """The current scope.

    Raises:
        RuntimeError: outside any scope.
    """
    scope = _current.get()
    if scope is None:
        raise RuntimeError(_NO_SCOPE)
    if scope.closed:
        raise RuntimeError(
            "the operation this load belongs to has ended (a task started by a resolver"
            " outlived it): load inside the operation, or open `anyql.loader_scope()`"
        )
    return scope


@asynccontextmanager
async def loader_scope() -> AsyncIterator[LoaderScope]:
    """A scope for loads made outside an execution (a background task, a test)."""
    scope = LoaderScope()
    token = scope.activate()
    try:
        async with scope._with_task_group():  # always: batches run without being awaited
            yield scope
    finally:
        scope.deactivate(token)


def loader(
    info: Any, batch_load: BatchLoad, *, key: Hashable | None = None, **options: Any
) -> DataLoader[Any, Any]:
    """The loader for ``batch_load`` in the current execution, made on first use.

    Args:
        info: the resolver's ``info`` (the scope itself comes from the execution).
        batch_load: ``(keys) -> values``, async or sync; identifies the loader.
        key: identifies the loader instead of ``batch_load`` (for batch functions made
            on the fly, which would otherwise never batch; anyql warns about those).
        options: ``DataLoader``'s keyword arguments, used when the loader is made.

    Raises:
        RuntimeError: outside any execution (see ``loader_scope``).
    """
    del info  # the scope is the execution's, whatever the context object is
    return current_scope()._loader_for(batch_load, key, options)


class _Batch:
    """Keys registered together, one dispatch, and the loads waiting for its outcome."""

    __slots__ = (
        "abandoned",
        "changed",
        "done",
        "generation",
        "keys",
        "loader",
        "outcomes",
        "scope",
        "scope_cancel",
        "started",
        "waiters",
    )

    def __init__(self, loader: DataLoader[Any, Any], scope: LoaderScope) -> None:
        self.loader = loader
        self.scope = scope
        #: cache key -> the key as given to ``load`` (what ``batch_load`` gets)
        self.keys: dict[Hashable, Any] = {}
        #: key -> (True, value) or (False, exception), once done
        self.outcomes: dict[Hashable, tuple[bool, Any]] = {}
        self.done = anyio.Event()
        #: Set when done, or when the load running it left and the next must take over.
        self.changed = anyio.Event()
        #: Loads of it that have not left yet (counted from ``load()``, not the await).
        self.waiters = 0
        self.scope_cancel = anyio.CancelScope()
        #: Every load of it left before it was done: later loads must not join it.
        self.abandoned = False
        #: The loader's cache generation when the batch began (a ``clear`` since: the
        #: values are not cached).
        self.generation = loader._generation
        #: Its dispatch began (in the scope's task group, or in its first awaiting load).
        self.started = False

    def _close_to_new_keys(self) -> None:
        if self.scope._open.get(self.loader) is self:
            del self.scope._open[self.loader]

    def leave(self) -> None:
        """One load of it left (got its outcome, or was cancelled)."""
        self.waiters -= 1
        if not self.waiters and not self.done.is_set():
            self.abandon()  # every load of it has left: stop loading

    def abandon(self) -> None:
        """Stop this batch (nobody waits for it any more) and let later loads start anew."""
        self.abandoned = True
        self.scope_cancel.cancel()
        self._close_to_new_keys()
        for key in self.keys:
            self.loader._forget(key, self)

    def fail(self, error: Exception) -> None:
        """End the batch with ``error`` for every key that has no outcome yet."""
        self._close_to_new_keys()
        for key in self.keys:
            if key not in self.outcomes:
                self.outcomes[key] = (False, error)
                self.loader._forget(key, self)
        self._finish()

    async def dispatch(self) -> None:
        """Run the batch in the scope's task group; cancelled, it fails its loads."""
        try:
            await self._dispatch()
        finally:
            if not self.done.is_set():
                self.fail(RuntimeError("the load was cancelled"))

    async def lead(self) -> None:
        """Run the batch in the task of a load that awaits it (the scope has no task group).
        If that load is cancelled while others still wait, the next of them runs it."""
        try:
            await self._dispatch()
        finally:
            if not self.done.is_set():
                if self.waiters > 1 and not self.abandoned:  # others wait: hand it over
                    self.started = False
                    self.scope_cancel = anyio.CancelScope()
                    self.scope._waiting.append(self)
                    changed, self.changed = self.changed, anyio.Event()
                    changed.set()
                else:
                    self.fail(RuntimeError("the load was cancelled"))

    async def _dispatch(self) -> None:
        loader = self.loader
        try:
            with self.scope_cancel:
                with anyio.move_on_after(loader.max_delay):
                    quiet = 0
                    seen = self.scope.loads
                    while quiet < loader.idle_checkpoints:
                        await anyio.lowlevel.checkpoint()
                        if self.scope.loads == seen:
                            quiet += 1
                        else:
                            seen, quiet = self.scope.loads, 0
                self._close_to_new_keys()  # later loads start a new batch
                keys = list(self.keys)  # cache keys
                size = loader.max_batch_size or len(keys) or 1
                chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
                if len(chunks) == 1:
                    await self._load(chunks[0])
                else:
                    async with anyio.create_task_group() as chunk_group:
                        for chunk in chunks:
                            chunk_group.start_soon(self._load, chunk)
                self._finish()
        except Exception as error:  # never out of the scope's task group: to the loads
            logger.exception("a batch of %r failed", loader.batch_load)
            self.fail(error)

    def _finish(self) -> None:
        self.done.set()
        self.changed.set()

    async def _load(self, keys: list[Hashable]) -> None:
        loader = self.loader
        name = getattr(loader.batch_load, "__qualname__", loader.batch_load)
        try:
            values: Any = loader.batch_load([self.keys[key] for key in keys])
            if inspect.isawaitable(values):
                values = await values
            if isinstance(values, Mapping) or not isinstance(values, Iterable):
                raise TypeError(
                    f"batch_load {name!r} returned {type(values).__name__}: it must return a"
                    " sequence of values, one per key, in the order of the keys"
                )
            values = list(values)
        except Exception as error:
            for key in keys:
                self.outcomes[key] = (False, error)
                loader._forget(key, self)
            return
        if len(values) != len(keys):
            wrong = ValueError(
                f"batch_load {name!r} returned {len(values)} values for {len(keys)} keys:"
                " it must return one per key, in the order of the keys"
            )
            for key in keys:
                self.outcomes[key] = (False, wrong)
                loader._forget(key, self)
            return
        keep = loader.cache and loader._generation == self.generation
        for key, value in zip(keys, values, strict=True):
            if isinstance(value, Exception):
                self.outcomes[key] = (False, value)
                loader._forget(key, self)  # an error is not cached
            else:
                self.outcomes[key] = (True, value)
                if keep:  # later loads take it at once, in any scope
                    loader._values[key] = _Resolved(value)
                    loader._forget(key, self)

    async def wait(self) -> None:
        """Until the batch is done, or handed over to the next load to run."""
        await self.changed.wait()


class _Resolved(Generic[V]):
    """A loaded value: awaiting it returns it at once (any number of times)."""

    __slots__ = ("value",)

    def __init__(self, value: V) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, V]:
        return self.value
        yield  # a generator that returns at once

    def release(self) -> None:
        """Nothing to release: it waits for nothing."""


class _Load(Generic[V]):
    """What ``load`` returns for a key of a batch, registered already (counted as one of
    the batch's loads until it leaves)."""

    __slots__ = ("_batch", "_key", "_left")

    def __init__(self, batch: _Batch, key: Hashable) -> None:
        self._batch = batch
        self._key = key
        self._left = False

    def release(self) -> None:
        """Leave the batch without awaiting (once)."""
        if not self._left:
            self._left = True
            self._batch.leave()

    def __await__(self) -> Generator[Any, None, V]:
        batch = self._batch
        if self._left:  # awaited again after leaving: it counts again
            self._left = False
            batch.waiters += 1
        try:
            # An outcome that is there already is returned without a scheduler round (as
            # awaiting a finished future is); only a load whose batch still runs waits.
            while not batch.done.is_set():
                if batch.scope._run_here(batch):
                    yield from batch.lead().__await__()
                else:
                    yield from batch.wait().__await__()
        finally:
            self.release()
        ok, outcome = batch.outcomes[self._key]
        if ok:
            return cast(V, outcome)
        raise outcome


class _Many(Generic[V]):
    """What ``load_many`` returns: the loads of its keys, awaited in order."""

    __slots__ = ("_loads",)

    def __init__(self, loads: list[_Load[V] | _Resolved[V]]) -> None:
        self._loads = loads

    def __await__(self) -> Generator[Any, None, list[V]]:
        values: list[V] = []
        loads = self._loads
        index = 0
        try:
            for index, each in enumerate(loads):  # noqa: B007 - read in the handler
                values.append((yield from each.__await__()))
        except BaseException:
            for rest in loads[index + 1 :]:  # they will not be awaited: they leave now
                rest.release()
            raise
        return values


class DataLoader(Generic[K, V]):
    """Batches the loads of one scope into calls of ``batch_load``, and caches their values.

    Args:
        batch_load: ``(keys: list[K]) -> Sequence[V | Exception]``, async or sync (a sync
            one runs on the event loop: wrap a blocking store in ``anyio.to_thread``). One
            value per key, in the keys' order; an ``Exception`` value fails only its key.
        max_batch_size: the most keys of one call; None for no bound (chunks of one
            dispatch load concurrently).
        cache: keep values for later loads of the same key (for as long as this loader:
            one scope, through ``anyql.loader``). Duplicate keys of one batch are loaded
            once either way.
        cache_key: maps a key to the key the cache and the batch use (for unhashable keys).
        idle_checkpoints: dispatch once the scope has made no new load for this many
            scheduler checkpoints ...
        max_delay: ... or after this many seconds, whichever comes first.

    Raises:
        ValueError: an option out of range.
    """

    def __init__(
        self,
        batch_load: BatchLoad,
        *,
        max_batch_size: int | None = None,
        cache: bool = True,
        cache_key: Callable[[Any], Hashable] | None = None,
        idle_checkpoints: int = 8,
        max_delay: float = 0.05,
    ) -> None:
        if max_batch_size is not None and not _whole(max_batch_size, 1):
            raise ValueError(
                f"max_batch_size must be a whole number >= 1 or None, not {max_batch_size!r}"
            )
        if not _whole(idle_checkpoints, 1):
            raise ValueError(
                f"idle_checkpoints must be a whole number >= 1, not {idle_checkpoints!r}"
            )
        if not isinstance(max_delay, int | float) or not max_delay > 0:
            raise ValueError(f"max_delay must be more than 0 seconds, not {max_delay!r}")
        self.batch_load = batch_load
        self.max_batch_size = max_batch_size
        self.cache = cache
        self.cache_key = cache_key
        self.idle_checkpoints = idle_checkpoints
        self.max_delay = max_delay
        #: key -> the batch that is loading it
        self._cached: dict[Hashable, _Batch] = {}
        #: key -> its value, once loaded (or given with ``prime``)
        self._values: dict[Hashable, _Resolved[Any]] = {}
        #: Bumped by ``clear``/``clear_all``: a batch begun before does not cache.
        self._generation = 0

    def load(self, key: K) -> Awaitable[V]:
        """Register ``key`` now and return what to await for its value.

        Awaiting it raises the ``Exception`` value ``batch_load`` gave for the key, or what
        ``batch_load`` raised (for every key of its chunk), or ``ValueError`` when it
        returned the wrong number of values.

        Raises:
            RuntimeError: outside any scope, when the key must be loaded (at once, not
                when awaited); a value cached already is returned anywhere.
        """
        return self._load(key)

    def _load(self, key: K) -> _Load[V] | _Resolved[V]:
        cache_key = key if self.cache_key is None else self.cache_key(key)
        if self.cache:
            resolved = self._values.get(cache_key)
            if resolved is not None:
                return resolved  # a dictionary lookup: no batch, no task switch
        scope = current_scope()
        if self.cache:
            cached = self._cached.get(cache_key)
            # another scope's batch still loading is not waited on: it ends with its scope
            if cached is not None and not cached.abandoned and cached.scope is scope:
                cached.waiters += 1
                return _Load(cached, cache_key)
        scope.loads += 1
        _usage.loads_made = True
        batch = scope._open.get(self)
        if batch is None or batch.abandoned:
            batch = scope._open[self] = _Batch(self, scope)
            scope._start(batch)
        batch.keys.setdefault(cache_key, key)
        batch.waiters += 1
        if self.cache:
            self._cached[cache_key] = batch
        return _Load(batch, cache_key)

    def load_many(self, keys: Sequence[K]) -> Awaitable[list[V]]:
        """Register every key now; await the result for their values, in order (one batch).

        Awaiting it raises the first key's error, in the order of ``keys``.

        Raises:
            RuntimeError: outside any scope (at once).
        """
        return _Many([self._load(key) for key in keys])

    def prime(self, key: K, value: V) -> None:
        """Cache ``value`` for ``key`` unless the key is cached already."""
        cache_key = key if self.cache_key is None else self.cache_key(key)
        if cache_key not in self._cached and cache_key not in self._values:
            self._values[cache_key] = _Resolved(value)

    def clear(self, key: K) -> None:
        """Forget ``key``'s cached value (the next load loads it again)."""
        cache_key = key if self.cache_key is None else self.cache_key(key)
        self._generation += 1
        self._cached.pop(cache_key, None)
        self._values.pop(cache_key, None)

    def clear_all(self) -> None:
        """Forget every cached value."""
        self._generation += 1
        self._cached.clear()
        self._values.clear()

    def _forget(self, key: Hashable, batch: _Batch) -> None:
        if self._cached.get(key) is batch:
            del self._cached[key]


def _whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
