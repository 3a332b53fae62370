"""`python -m search.cli`: the same as the `collatz-hpo` command."""

import sys

from search.cli import main

sys.exit(main())
