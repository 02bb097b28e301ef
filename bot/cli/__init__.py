"""The `cx` command line (main.py holds the app): each command loads the settings, does one thing,
and reports a known failure as one line with exit code 2."""
