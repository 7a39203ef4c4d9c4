"""``python -m tilepipe.cli``: the same as the ``tilepipe`` command."""

import sys

from tilepipe.cli import main

if __name__ == "__main__":
    sys.exit(main())
