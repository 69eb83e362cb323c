"""`python -m bft` runs the `bft` command."""

import sys

from bft.cli import main

sys.exit(main())
