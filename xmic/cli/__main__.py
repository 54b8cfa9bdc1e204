"""``python -m xmic.cli``: the same as the ``xmic`` command."""
from xmic.cli import main

main()
