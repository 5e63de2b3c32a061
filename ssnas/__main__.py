"""`python -m ssnas ...`: the same command line as the `ssnas` script."""
import sys

from ssnas.cli import main

sys.exit(main())
