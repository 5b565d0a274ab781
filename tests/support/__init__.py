"""Test helpers that run the real parts: redis-server, service processes, ASGI apps in-process."""
