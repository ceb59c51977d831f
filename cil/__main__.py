"""``python -m cil ...``: the same as the ``cil`` command."""

import sys

from cil.cli import main

sys.exit(main())
