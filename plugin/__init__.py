"""Amends: the Flask application and the services the rest of the code shares."""

from plugin.app import create_app

__all__ = ["create_app"]
