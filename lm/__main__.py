"""`python -m lm`: see `lm.cli`."""

import sys

from lm.cli import main

if __name__ == "__main__":
    sys.exit(main())
