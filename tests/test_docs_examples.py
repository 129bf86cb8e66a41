"""Every code block of the README and the documentation works as written: Python runs (or, for
a marked fragment, compiles), JSON parses, and each command names a program, option, make
target or extra that exists; the blocks are read from the files themselves (``doc_blocks``).

The example projects (``<!-- example: file NAME -->``) run against the installed wheel in
``tests/test_packaging.py``.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from support.azure import azurite_args
from support.doc_blocks import MARKER_KINDS, ROOT, Block, blocks, documents

from flask_obo import FlaskOBO, current_token, telemetry
from flask_obo.cli import obo_cli
from flask_obo.testing import EntraEmulator
from flask_obo.testing.config import DEMO_CONFIG, apply_config, emulator_options

ALL = [block for document in documents() for block in blocks(document)]
SHELLS = {"sh", "bash", "shell", "console"}
# Blocks that show, not run: diagrams, log lines, headers; MyST directives ({toctree}, ...).
SHOWN = {"text", ""}
# Browser code shown in the README is the SPA sample's own (samples/spa/app.js), which
# tests/test_spa_browser.py runs in Chromium.
BROWSER = {"js"}
# Prometheus queries over flask-obo's metrics (docs/guides/telemetry.md).
PROMQL = {"promql"}


def of(langs: set[str]) -> list[Block]:
    return [block for block in ALL if block.lang in langs]


def test_the_documents_have_blocks_of_every_kind() -> None:
    kinds = {block.kind for block in ALL}
    assert {"", "fragment", "file", "emulator"} <= kinds
    assert len(of({"python"})) >= 6 and len(of(SHELLS)) >= 6


@pytest.mark.parametrize("block", ALL, ids=lambda b: b.where)
def test_every_block_is_of_a_kind_this_test_knows(block: Block) -> None:
    assert block.kind in MARKER_KINDS | {""}, f"{block.where}: unknown marker {block.kind!r}"
    known = {"python", "json"} | SHELLS | SHOWN | BROWSER | PROMQL
    assert block.lang in known or block.lang.startswith("{"), (
        f"{block.where}: a {block.lang!r} block: teach tests/test_docs_examples.py to test it")


# -- Python ------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", of({"python"}), ids=lambda b: b.where)
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = compile(block.body, block.where, "exec")
    if block.kind in ("fragment", "file"):  # files: run by tests/test_packaging.py
        return
    monkeypatch.chdir(tmp_path)
    exec(code, {"__name__": "docs_example"})


@pytest.mark.parametrize("block", of({"json"}), ids=lambda b: b.where)
def test_json_block_parses(block: Block) -> None:
    json.loads(block.body)


# -- Prometheus queries --------------------------------------------------------------------------

def prometheus_names() -> set[str]:
    """flask-obo's series and labels as the Prometheus exporter names them: dots become
    underscores, counters end in ``_total``, the histogram carries its unit (seconds)."""
    counters = (telemetry.VALIDATIONS, telemetry.ACQUISITIONS, telemetry.CACHE_ERRORS)
    names = {f"{name.replace('.', '_')}_total" for name in counters}
    names |= {f"{telemetry.IDP_DURATION.replace('.', '_')}_seconds_{part}"
              for part in ("bucket", "sum", "count")}
    source = (ROOT / "flask_obo" / "telemetry.py").read_text()
    attributes = set(re.findall(r'"(flask_obo\.[a-z_]+)"', source))
    return names | {attribute.replace(".", "_") for attribute in attributes}


@pytest.mark.parametrize("block", of(PROMQL), ids=lambda b: b.where)
def test_promql_block_names_only_what_flask_obo_exports(block: Block) -> None:
    named = set(re.findall(r"\bflask_obo_[a-z_]+", block.body))
    assert named, f"{block.where}: no flask-obo series in the query"
    unknown = named - prometheus_names()
    assert not unknown, f"{block.where}: flask-obo exports no {sorted(unknown)}"


# -- commands ------------------------------------------------------------------------------

def commands(body: str) -> Iterator[list[str]]:
    """Each simple command of a shell block, as words (comments, assignments and pipes cut)."""
    text = re.sub(r"\\\n", " ", body)
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, ";"]:
            if word in (";", "&&", "||", "|", "&"):
                while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
                    command.pop(0)  # VAR=value before a command, or alone
                if command:
                    yield command
                command = []
            else:
                command.append(word)


def _extras() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return set(parser["options.extras_require"])


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def check_command(words: list[str], block: Block) -> None:
    program, args = words[0], words[1:]
    where = f"{block.where}: {shlex.join(words)}"
    if program in ("export", "echo", "cd"):
        return
    if program == "pip":
        assert args[0] == "install", where
        for spec in args[1:]:
            match = re.fullmatch(r"flask-obo(?:\[(?P<extras>[a-z,]+)\])?", spec)
            assert match, f"{where}: installs something other than flask-obo"
            assert set((match["extras"] or "").split(",")) - {""} <= _extras(), where
    elif program == "make":
        assert set(args) <= _make_targets(), f"{where}: no such make target"
    elif program == "flask":
        rest = list(args)
        if rest[:1] == ["--app"]:
            rest = rest[2:]
        if rest[0] == "obo":
            assert rest[1] in obo_cli.commands, where
        else:
            assert rest[0] == "run", where
    elif program in ("python", "python3"):
        if args[:2] == ["-m", "flask_obo.testing"]:
            check_serve_options(args[2:], where)
        elif args[:1] == ["-c"]:
            if block.kind != "fragment":
                subprocess.run([sys.executable, "-c", args[1]], check=True, timeout=60,
                               capture_output=True)
        else:
            pytest.fail(f"{where}: teach tests/test_docs_examples.py this python command")
    elif program == "azurite-blob":  # the Azure guide's: options the suite's Azurite runs with
        tested = set(azurite_args("server.pem", "server.key"))
        assert {a for a in args if a.startswith("--")} <= tested, where
    elif program in ("gunicorn", "curl"):
        assert shutil.which(program) or (Path(sys.executable).parent / program).exists(), where
    else:
        pytest.fail(f"{where}: teach tests/test_docs_examples.py the command {program!r}")


def check_serve_options(args: list[str], where: str) -> None:
    assert args[0] == "serve", where
    helped = subprocess.run([sys.executable, "-m", "flask_obo.testing", "serve", "--help"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    options = [a for a in args[1:] if a.startswith("--")]
    missing = [o for o in options if o not in helped]
    assert not missing, f"{where}: serve has no option {missing}"


@pytest.mark.parametrize("block", [b for b in of(SHELLS) if b.kind != "emulator"],
                         ids=lambda b: b.where)
def test_shell_block_commands_exist(block: Block) -> None:
    # (Emulator blocks run for real, below.)
    found = list(commands(block.body))
    assert found, f"{block.where}: no command"
    for words in found:
        check_command(words, block)


# -- the block that gets a token for curl ------------------------------------------------------

@pytest.fixture(scope="module")
def demo_emulator() -> Iterator[EntraEmulator]:
    """The emulator as ``python -m flask_obo.testing serve`` runs it: the demo directory."""
    emu = EntraEmulator(**emulator_options(DEMO_CONFIG))
    apply_config(emu, DEMO_CONFIG, Path("."))
    with emu:
        yield emu


@pytest.mark.parametrize("block", [b for b in ALL if b.kind == "emulator"],
                         ids=lambda b: b.where)
def test_emulator_block_gets_a_token_the_api_accepts(block: Block,
                                                     demo_emulator: EntraEmulator) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "OBO_AUTHORITY": demo_emulator.authority(), "OBO_CA_BUNDLE": demo_emulator.ca_bundle}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.body + '\nprintf %s "$TOKEN"'],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    api = demo_emulator.get_app("middle-tier")
    alice = demo_emulator.directory.user_by_name("alice@contoso.test")
    app = Flask("curl-check")
    app.config.update(OBO_AUTHORITY=demo_emulator.authority(), OBO_CLIENT_ID=api.client_id,
                      OBO_CA_BUNDLE=demo_emulator.ca_bundle)
    FlaskOBO(app)
    app.get("/me")(lambda: {"oid": current_token.oid, "scopes": sorted(current_token.scopes)})
    response = app.test_client().get("/me", headers={"Authorization": f"Bearer {result.stdout}"})
    assert response.status_code == 200, response.json
    assert response.json == {"oid": alice.oid, "scopes": ["access_as_user"]}
