"""Flotilla: serve LLMs from a fleet of cheap, short-lived GPU machines behind one OpenAI URL."""

__version__ = "0.1.0"
