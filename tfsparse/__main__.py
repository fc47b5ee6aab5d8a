"""`python -m tfsparse <command>`: the same as the `tfsparse` command."""

import sys

from tfsparse.commands import main

sys.exit(main())
