"""``flask obo``: commands that check a deployment's configuration in plain words.

``flask obo check`` runs the checks of ``CHECKS`` in order, then those an app added with
``flask_obo.checks.register_check``. A check takes the app's ``OboState`` and yields
``CheckResult`` objects; each concern's check lives in the module that owns the
concern.

The command loads the app itself, so a configuration that stops the app at start is reported
as ``[FAIL] configuration: <what to set>`` rather than as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import click
from flask import Flask, current_app
from flask.cli import AppGroup, NoAppException, ScriptInfo

from .acquisition import check_credential
from .cache.backends import check_token_cache
from .checks import EXTRA_CHECKS, Check, CheckResult
from .downstream.api import check_downstream_names
from .errors import AuthorityError, FlaskOBOError
from .state import OboState

__all__ = ["CHECKS", "obo_cli"]


def check_configuration(state: OboState) -> Iterator[CheckResult]:
    config = state.config
    tenants = ("any tenant" if config.allowed_tenants is None and config.is_multi_tenant
               else ", ".join(sorted(config.allowed_tenants or ())) or "the authority's tenant")
    yield CheckResult(True, "configuration", "; ".join([
        f"authority {config.authority}",
        f"client id {config.client_id}",
        f"audiences {', '.join(sorted(config.audiences))}",
        f"tenants {tenants}",
        f"token versions {', '.join(sorted(config.accepted_versions))}",
        f"algorithms {', '.join(config.algorithms)}",
    ]))
    if config.is_multi_tenant and config.allowed_tenants is None:
        yield CheckResult(True, "tenants", "OBO_ALLOWED_TENANTS is '*': users of ANY Entra tenant "
                          "can call this API; list tenant IDs to restrict it.", warning=True)


def check_authority(state: OboState) -> Iterator[CheckResult]:
    authority = state.validator.authority
    try:
        metadata = authority.refresh()
    except AuthorityError as exc:
        yield CheckResult(False, "authority", str(exc))
        return
    for version, issuer in sorted(metadata.issuers.items()):
        yield CheckResult(True, f"issuer (v{version} tokens)", issuer)
    for version, why in sorted(metadata.unavailable.items()):
        # The other versions' tokens are validated meanwhile; these get 503s.
        yield CheckResult(False, f"issuer (v{version} tokens)", f"v{version} tokens cannot be "
                          f"validated (they get 503 while this lasts): {why}")
    usable = [kid for kid, key in metadata.keys.items()
              if _key_fits(key.key_type, state.config.algorithms)]
    if not usable:
        yield CheckResult(False, "signing keys",
                          f"{metadata.jwks_uri} has {len(metadata.keys)} key(s), none usable with "
                          f"OBO_ALGORITHMS={list(state.config.algorithms)}: set OBO_ALGORITHMS "
                          "to the algorithms the authority signs with (Entra: RS256).")
    else:
        yield CheckResult(True, "signing keys",
                          f"{len(usable)} key(s) from {metadata.jwks_uri}: {', '.join(usable)}")


def check_credential_configured(state: OboState) -> Iterator[CheckResult]:
    if not state.config.has_credential:
        yield CheckResult(True, "credential", "none configured: this API validates tokens but "
                          "cannot call downstream APIs on the user's behalf.", warning=True)


def _key_fits(key_type: str, algorithms: Iterable[str]) -> bool:
    wanted = "EC" if key_type == "EC" else "RSA"
    return any((alg.startswith("ES") and wanted == "EC")
               or (alg[:2] in ("RS", "PS") and wanted == "RSA") for alg in algorithms)


#: The checks ``flask obo check`` runs, in order (then the app's own, ``register_check``).
CHECKS: tuple[Check, ...] = (check_configuration, check_authority, check_credential_configured,
                             check_credential, check_downstream_names, check_token_cache)


obo_cli = AppGroup("obo", help="flask-obo: check the protected API's configuration.")


@obo_cli.command("check", with_appcontext=False)
@click.pass_context
def check_command(ctx: click.Context) -> None:
    """Load the OBO_ config, fetch the authority's discovery and keys, report what is wrong."""
    app = _load_app(ctx)
    with app.app_context():
        _run_checks(app)


def _load_app(ctx: click.Context) -> Flask:
    if current_app:
        return current_app._get_current_object()  # type: ignore[attr-defined, no-any-return]
    try:
        return ctx.ensure_object(ScriptInfo).load_app()
    except NoAppException as exc:
        _line(False, "app", exc.format_message())
    except FlaskOBOError as exc:  # FlaskOBO(app) refused the configuration at start
        _line(False, "configuration", str(exc))
    raise SystemExit(1)


def _run_checks(app: Flask) -> None:
    state: OboState | None = app.extensions.get("obo")
    if state is None:
        _line(False, "flask-obo", "not initialised on this app: call FlaskOBO(app) or "
              "obo.init_app(app) in the app factory.")
        raise SystemExit(1)
    failed = 0
    for check in (*CHECKS, *EXTRA_CHECKS):
        try:
            results = list(check(state))
        except Exception as exc:  # one broken check must not hide the others' findings
            results = [CheckResult(False, getattr(check, "__name__", "check"),
                                   f"the check itself failed: {type(exc).__name__}: {exc}")]
        for result in results:
            _line(result.ok, result.title, result.detail, warning=result.warning)
            failed += not result.ok
    if failed:
        click.echo(f"{failed} problem(s) found.", err=True)
        raise SystemExit(1)
    click.echo("All checks passed.")


def _line(ok: bool, title: str, detail: str, *, warning: bool = False) -> None:
    mark = "WARN" if ok and warning else ("ok" if ok else "FAIL")
    color = "yellow" if mark == "WARN" else ("green" if ok else "red")
    click.echo(f"[{click.style(mark, fg=color)}] {title}: {detail}", err=not ok)
