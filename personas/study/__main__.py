"""``python -m personas.study``: the whole study from the command line (``personas.study.cli``)."""

import sys

from personas.study.cli import main

main(sys.argv[1:])
