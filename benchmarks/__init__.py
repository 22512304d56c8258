"""Benchmarks for anyql (not part of the installed package).

``benchmarks/fanout.py`` is the connection fan-out benchmark; ``app.py`` is the anyql app it
serves, ``strawberry_app.py`` the Strawberry equivalent and ``baseline_server.py`` the
generator-ceiling server that only writes pre-encoded frames.
"""
