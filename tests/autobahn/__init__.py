"""The Autobahn test-suite case files (run by kosoku) against the native WebSocket transport."""
