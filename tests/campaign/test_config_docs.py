"""config/README.md's key tables are the schema's: regenerate them with scripts/config_docs.py."""

from __future__ import annotations

import re

from tilepipe.campaign.docs import MARKERS, render
from tilepipe.core.settings import config_schema

from ..conftest import REPO

README = REPO / "config" / "README.md"


def _keys(node: dict, prefix: str = ""):
    """(dotted key, schema) of every key the schema defines, nested ones included."""
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key, sub
        yield from _keys(sub, f"{key}.")
        for alt in sub.get("oneOf", []):
            yield from _keys(alt, f"{key}.")
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict):
            yield from _keys(extra, f"{key}.{sub.get('x-key', 'NAME')}.")


def test_the_readme_tables_are_generated_from_the_schema():
    text = README.read_text(encoding="utf-8")
    assert render(text, config_schema()) == text, "run: python scripts/config_docs.py"


def test_every_top_level_key_has_a_table():
    listed = [k for m in MARKERS.finditer(README.read_text()) for k in m.group(2).split()]
    assert sorted(listed) == sorted(config_schema()["properties"])


def test_every_key_has_a_description():
    missing = [key for key, sub in _keys(config_schema()) if not sub.get("description")]
    assert missing == []


def test_a_changed_default_makes_the_readme_stale():
    schema = config_schema()
    schema["properties"]["report"]["properties"]["quicklook_size"]["default"] = 640
    text = README.read_text(encoding="utf-8")
    fresh = render(text, schema)
    assert fresh != text
    assert re.search(r"`report\.quicklook_size` \| [^|]+ \| `640` \|", fresh)
