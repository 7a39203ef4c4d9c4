"""Rewrite config/README.md's key tables from the config schema; ``--check`` only compares.

python scripts/config_docs.py          # rewrite the tables between the markers
python scripts/config_docs.py --check  # exit 1 when the README disagrees with the schema
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tilepipe.campaign.docs import render
from tilepipe.core.settings import config_schema

README = Path(__file__).resolve().parents[1] / "config" / "README.md"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` compare) the README's tables; 1 when they were stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    fresh = render(text, config_schema())
    if fresh == text:
        return 0
    if args.check:
        print(f"{args.readme}: key tables differ from the schema; run {sys.argv[0]}")
        return 1
    args.readme.write_text(fresh, encoding="utf-8")
    print(f"{args.readme}: key tables rewritten from the schema")
    return 0


if __name__ == "__main__":
    sys.exit(main())
