"""The tables the docs and the README share with the code, generated from where they are defined.

- the configuration reference, from ``flask_obo.config.KEYS``;
- the token refusal reasons, from ``flask_obo.validation.REASONS``;
- the AADSTS troubleshooting table, from ``flask_obo.acquisition.aadsts.AADSTS_HINTS``.

As a Sphinx extension it writes them to ``docs/_generated/`` (git-ignored) before each build,
and the pages include them. The README carries the same tables between markers;
``python docs/_ext/obo_docs.py`` rewrites them there (``tests/test_docs.py`` fails while they
differ), so adding a key to ``KEYS`` and running it is all a new setting needs.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask_obo.acquisition.aadsts import AADSTS_HINTS
from flask_obo.config import KEYS, Key
from flask_obo.validation import REASONS

ROOT = Path(__file__).resolve().parents[2]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        items = ", ".join(_literal(item) for item in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    return repr(value)


def _default(key: Key) -> str:
    return key.shown if key.shown is not None else f"`{_literal(key.default)}`"


def configuration_table() -> str:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{key.name}` | {key.type} | {_cell(_default(key))} | {_cell(key.doc)} |"
             for key in KEYS]
    return "\n".join(rows) + "\n"


def reasons_table() -> str:
    rows = ["| `reason` | `detail` (the client's phrase) |", "| --- | --- |"]
    rows += [f"| `{reason}` | {_cell(detail)} |" for reason, detail in REASONS.items()]
    return "\n".join(rows) + "\n"


def troubleshooting_table() -> str:
    rows = ["| code | meaning | fix |", "| --- | --- | --- |"]
    rows += [f"| {', '.join(f'AADSTS{c}' for c in hint.codes)} | {_cell(hint.meaning)} | "
             f"{_cell(hint.fix)} |" for hint in AADSTS_HINTS]
    return "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[], str]] = {
    "configuration": configuration_table,
    "reasons": reasons_table,
    "troubleshooting": troubleshooting_table,
}

_MARKED = re.compile(r"(<!-- generated: (?P<name>[a-z]+) \(docs/_ext/obo_docs\.py\) -->\n)"
                     r"(?P<body>.*?)(<!-- end generated -->)", re.S)


def marked_tables(text: str) -> dict[str, str]:
    """The generated tables a markdown file carries, by name."""
    return {m["name"]: m["body"] for m in _MARKED.finditer(text)}


def update_marked_tables(text: str) -> str:
    """``text`` with every marked table regenerated."""
    return _MARKED.sub(lambda m: m.group(1) + TABLES[m["name"]]() + m.group(4), text)


def generate(srcdir: Path) -> None:
    """Write every table to ``<srcdir>/_generated/<name>.md`` (only when it changed, so
    Sphinx rebuilds only the pages that include a changed table)."""
    out = srcdir / "_generated"
    out.mkdir(exist_ok=True)
    for name, render in TABLES.items():
        path = out / f"{name}.md"
        text = render()
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", lambda app: generate(Path(app.srcdir)))
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    updated = update_marked_tables(text)
    if updated != text:
        readme.write_text(updated)
        print("README.md: generated tables updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
