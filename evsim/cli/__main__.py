"""``python -m evsim.cli``: the same as the ``evsim`` console script."""

import sys

from evsim.cli.main import main

sys.exit(main())
