"""`python -m bot` is `cx run`."""

import sys

from bot.cli.main import main

main(["run", *sys.argv[1:]])
