"""Benchmarks for anyql (not part of the installed package).

``benchmarks/fanout.py`` is the connection fan-out benchmark; ``app.py`` is the anyql app it
serves, ``strawberry_app.py`` the Strawberry equivalent and ``baseline_server.py`` the
generator-ceiling server that only writes pre-encoded frames. ``http.py`` is the HTTP query
benchmark (autocannon, from ``npm ci --prefix benchmarks``); ``http_app.py``,
``http_strawberry_app.py`` and ``http_ariadne_app.py`` serve the schema and data of
``_http_schema.py``. ``drain.py`` measures the drain of ``anyql serve`` (1001 closes spread
over ``drain_window``, the reconnects a second server receives); ``drain_app.py`` is the app
both its servers serve and ``_drain_clients.py`` its clients. ``dataloader.py`` measures
the DataLoader (an N+1 query over HTTP with and without a loader, beside Strawberry's, and
the cost of one ``load()`` beside aiodataloader's), with its ``_dataloader_*.py`` helpers.

``http.py`` shadows the standard library's ``http`` package (``anyql`` imports it) wherever
this directory is on the path, and Python puts it first for a script run as ``python
benchmarks/<script>.py``. So every script that can be run directly (``fanout.py``,
``soak.py``, ``memory_probe.py``, ``baseline_server.py``, ``http.py``, ``drain.py``,
``dataloader.py``), as its
first statements after ``from __future__ import annotations``, replaces this directory on
``sys.path`` by the repository root (which also makes ``benchmarks`` importable); a new
script copies the same guard, and ``tests/test_benchmark_smoke.py`` checks it. The servers
the benchmarks start run from the repository root, with it on ``PYTHONPATH``, never with
this directory on their path.
"""
