"""Burst tests reuse the control plane's fixtures (the app in-process over a real Redis)."""

from tests.control_plane.conftest import open_control_plane, running, store_url  # noqa: F401
