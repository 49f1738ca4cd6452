"""`python -m lm`: parse arguments, run one command, turn user errors into one line."""

import logging
import sys

from lm.cli_args import build_parser
from lm.errors import LmError


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 0 on success, 2 on a user error."""
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        args.func(args)
    except LmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
