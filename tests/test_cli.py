"""``flask obo check``: plain-words diagnostics and a non-zero exit code on any problem."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import Result
from flask import Flask
from support.apps import MakeApp

from flask_obo.checks import EXTRA_CHECKS, CheckResult, register_check
from flask_obo.state import OboState
from flask_obo.testing import App
from flask_obo.testing.pytest_plugin import EntraTestHelper


def run_check(app: Flask) -> Result:
    result: Result = app.test_cli_runner().invoke(args=["obo", "check"])
    return result


def test_check_passes_against_a_working_authority(make_app: MakeApp, emulator: EntraTestHelper,
                                                  api_registration: App) -> None:
    result = run_check(make_app())
    assert result.exit_code == 0, result.output
    assert f"authority {emulator.authority()}" in result.output
    assert f"issuer (v2.0 tokens): {emulator.issuer(version=2)}" in result.output
    assert f"issuer (v1.0 tokens): {emulator.issuer(version=1)}" in result.output
    assert emulator.signing_kid in result.output
    assert "All checks passed." in result.output


def test_untrusted_certificate_says_to_set_the_ca_bundle(make_app: MakeApp) -> None:
    result = run_check(make_app(OBO_CA_BUNDLE=None))
    assert result.exit_code == 1
    assert "TLS verification of 127.0.0.1" in result.output
    assert "set OBO_CA_BUNDLE" in result.output


def test_unknown_tenant_says_to_check_the_authority(make_app: MakeApp,
                                                    emulator: EntraTestHelper) -> None:
    result = run_check(make_app(
        OBO_AUTHORITY=f"{emulator.base_url}/00000000-0000-0000-0000-000000000000"))
    assert result.exit_code == 1
    assert "check the tenant in OBO_AUTHORITY" in result.output


def test_unreachable_authority(make_app: MakeApp) -> None:
    result = run_check(make_app(OBO_AUTHORITY="https://127.0.0.1:9/tenant", OBO_HTTP_TIMEOUT=2))
    assert result.exit_code == 1
    assert "cannot reach 127.0.0.1:9" in result.output


def test_failing_authority(make_app: MakeApp, emulator: EntraTestHelper) -> None:
    emulator.faults.inject("discovery", "status", status=503)
    result = run_check(make_app())
    assert result.exit_code == 1
    assert "answered HTTP 503" in result.output and "try again" in result.output


def test_no_key_for_the_algorithms(make_app: MakeApp) -> None:
    result = run_check(make_app(OBO_ALGORITHMS=["ES256"]))
    assert result.exit_code == 1
    assert "none usable with OBO_ALGORITHMS=['ES256']" in result.output


def test_app_without_flask_obo(tmp_path: object) -> None:
    from flask_obo.cli import obo_cli

    app = Flask("bare")
    app.cli.add_command(obo_cli)
    result = run_check(app)
    assert result.exit_code == 1
    assert "not initialised on this app" in result.output


@pytest.fixture
def extra_check() -> Iterator[list[OboState]]:
    calls: list[OboState] = []

    def credential_works(state: OboState) -> Iterator[CheckResult]:
        calls.append(state)
        yield CheckResult(False, "credential", "the secret was refused: set OBO_CLIENT_SECRET")

    register_check(credential_works)
    register_check(credential_works)  # once only
    try:
        yield calls
    finally:
        EXTRA_CHECKS.remove(credential_works)


def test_registered_checks_run_and_fail_the_command(make_app: MakeApp,
                                                    extra_check: list[OboState]) -> None:
    app = make_app()
    result = run_check(app)
    assert result.exit_code == 1
    assert "[FAIL] credential: the secret was refused: set OBO_CLIENT_SECRET" in result.output
    assert extra_check == [app.extensions["obo"]]
