"""Helpers, constants and stand-ins that more than one test module uses."""
