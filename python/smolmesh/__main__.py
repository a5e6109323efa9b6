"""`python -m smolmesh`: the same command line as `smolmesh`."""

import sys

from smolmesh.cli import main

sys.exit(main())
