"""`python -m tfsparse.pipeline`: the same as `tfsparse pipeline`."""

import sys

from tfsparse.cli import run_main
from tfsparse.pipeline.runner import PROG, main

sys.exit(run_main(PROG, main))
