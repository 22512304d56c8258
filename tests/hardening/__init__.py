"""Hardening: the bad-input catalogue's remaining rows, limits, security switches, faults,
fuzzing and leaks, against the native server in-process and hypercorn in a subprocess."""
