"""Transports: thin adapters between a network server and the anyql app."""
