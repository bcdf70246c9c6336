"""``python -m restormer``: the same as the ``restormer`` command."""

from restormer.cli import main

main()
