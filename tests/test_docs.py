"""The README and the documentation say what the code does: the tables generated from the code
match it, every reason code the package raises is in the errors reference, every public name
is in the API reference, and the README's links work where it is read (PyPI too)."""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import flask_obo
from flask_obo import errors
from flask_obo.acquisition._msal import CLIENT_FAULT_CODES
from flask_obo.acquisition.aadsts import AADSTS_HINTS, hint_for
from flask_obo.validation import REASONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ERRORS_PAGE = (ROOT / "docs" / "reference" / "errors.md").read_text()


@pytest.fixture(scope="module")
def obo_docs() -> ModuleType:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import obo_docs as module
    finally:
        sys.path.pop(0)
    return module


@pytest.mark.parametrize("table", ["configuration", "troubleshooting"])
def test_the_readme_tables_are_those_the_code_generates(obo_docs: ModuleType,
                                                        table: str) -> None:
    carried = obo_docs.marked_tables(README)
    assert carried.get(table) == obo_docs.TABLES[table](), (
        f"README.md's {table} table differs from the code: run python docs/_ext/obo_docs.py")


def test_the_configuration_table_lists_every_key_with_its_default(obo_docs: ModuleType) -> None:
    rows = [line for line in obo_docs.configuration_table().splitlines()[2:]]
    assert [re.match(r"\| `(OBO_\w+)`", row)[1] for row in rows] == list(  # type: ignore[index]
        flask_obo.config.DEFAULTS)
    assert "| `OBO_CLOCK_SKEW` | int | `300` |" in obo_docs.configuration_table()
    assert '| `OBO_ALGORITHMS` | list of str | `("RS256",)` |' in obo_docs.configuration_table()


def test_check_has_words_for_every_code_that_blames_the_api_itself() -> None:
    for code in CLIENT_FAULT_CODES:
        assert hint_for([code]) is not None, f"AADSTS{code} has no hint in aadsts.py"
    assert len({code for hint in AADSTS_HINTS for code in hint.codes}) == sum(
        len(hint.codes) for hint in AADSTS_HINTS), "a code appears twice in AADSTS_HINTS"


# -- the errors reference -------------------------------------------------------------------

def _raised_reasons() -> set[str]:
    """Every reason code written as a literal in flask_obo (outside the emulator): ``reason=``
    arguments, the ``reason`` a constructor defaults, and ``_reject`` calls; an f-string
    counts by its literal prefix (``http_<status>`` is documented as such)."""
    found: set[str] = set()

    def literals(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return literals(node.body) | literals(node.orelse)
        if isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
            return {f"{node.values[0].value}<"}
        return set()

    for path in (ROOT / "flask_obo").rglob("*.py"):
        if "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "reason":
                    found |= literals(keyword.value)
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in ("setdefault", "pop") and node.args and literals(node.args[0]) == {
                    "reason"} and len(node.args) > 1:
                found |= literals(node.args[1])
            if name == "_reject" and node.args:
                found |= literals(node.args[0])
    return found


def test_every_reason_code_raised_is_in_the_errors_reference() -> None:
    raised = _raised_reasons()
    assert {"missing", "expired", "missing_scope", "unknown_downstream_api", "http_<",
            "downstream_timeout", "consent_required"} <= raised
    documented = set(re.findall(r"`([a-z_]+<?)", ERRORS_PAGE)) | set(REASONS)
    missing = sorted(raised - documented)
    assert not missing, f"docs/reference/errors.md does not explain the reasons {missing}"


def test_the_errors_reference_has_a_section_for_every_problem_type() -> None:
    classes = [cls for cls in vars(errors).values()
               if inspect.isclass(cls) and issubclass(cls, errors.OboError)
               and cls is not errors.OboError]
    assert len(classes) >= 10
    for cls in classes:
        assert f"({cls.type_name})=\n## `{cls.type_name}`" in ERRORS_PAGE, cls
        assert f"`{cls.__name__}`" in ERRORS_PAGE, cls


# -- the API reference and the README's links ------------------------------------------------

def test_every_public_name_is_in_the_api_reference() -> None:
    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    missing = [name for name in flask_obo.__all__ if f"flask_obo.{name}" not in page]
    assert not missing, f"docs/reference/api.md does not document {missing}"


def test_the_readme_links_only_to_absolute_addresses() -> None:
    # PyPI shows the README as the project's page: a relative link or an anchor is dead there.
    links = re.findall(r"\]\(([^)]+)\)", README)
    assert links, "the README lost its links"
    relative = [link for link in links if not link.startswith("https://")]
    assert not relative, f"README.md links that do not work on PyPI: {relative}"


def test_every_docs_section_of_the_readme_is_closed() -> None:
    opened = re.findall(r"<!-- docs:([a-z-]+) -->", README)
    closed = re.findall(r"<!-- /docs:([a-z-]+) -->", README)
    assert sorted(opened) == sorted(closed) and len(opened) >= 10
    assert len(set(opened)) == len(opened)
