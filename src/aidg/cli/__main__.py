"""``python -m aidg.cli``."""

from aidg.cli import main

main()
