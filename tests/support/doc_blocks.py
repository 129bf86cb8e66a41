"""The code blocks of the README and the documentation, read from the files themselves.

A block may be preceded by a marker comment that says how it is tested:

- ``<!-- example: fragment -->``: not runnable as it stands (it needs an app around it, or
  it holds placeholders); Python is compiled, commands are checked to exist;
- ``<!-- example: file NAME -->``: the file NAME of the page's example project: the project's
  files are written side by side and its tests run with pytest against the installed package
  (``tests/test_packaging.py``);
- ``<!-- example: emulator -->``: a shell block run with ``OBO_AUTHORITY`` and ``OBO_CA_BUNDLE``
  of an emulator serving the demo directory;
- none: Python runs as it is, commands are checked (``python -c`` ones run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                    re.M | re.S)
_MARKER = re.compile(r"<!-- example: (?P<kind>[a-z]+)(?: (?P<arg>\S+))? -->\s*\Z")
MARKER_KINDS = frozenset({"fragment", "file", "emulator", "run"})


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    body: str
    kind: str  # a marker kind, or "" for none
    arg: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def documents() -> list[Path]:
    """The README and every page of the documentation's sources."""
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md")
                  if not {"_build", "_generated"} & set(p.relative_to(ROOT / "docs").parts))
    return [ROOT / "README.md", *docs]


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n")
        last_line = before.rsplit("\n", 1)[-1]
        marker = _MARKER.search(last_line)
        info = match["info"].strip()
        found.append(Block(
            path=path, line=text.count("\n", 0, match.start()) + 1,
            lang=info.split()[0] if info else "", body=match["body"],
            kind=marker["kind"] if marker else "", arg=marker["arg"] if marker else None))
    return found


def example_projects() -> dict[Path, dict[str, str]]:
    """The example project of each document that has one: file name -> source."""
    projects: dict[Path, dict[str, str]] = {}
    for path in documents():
        for block in blocks(path):
            if block.kind == "file":
                assert block.arg, f"{block.where}: 'example: file' needs a file name"
                projects.setdefault(path, {})[block.arg] = block.body
    return projects
