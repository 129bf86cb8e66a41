"""Injected faults: error statuses with Retry-After, delays, held calls, dropped connections,
garbage, a JSON body of the test's own; and an outage of the whole emulator."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from support.checks import assert_entra_error
from support.world import World, post_token, session_for

from flask_obo.testing import EntraEmulator
from flask_obo.testing.pytest_plugin import EntraTestHelper


def cc_data(world: World) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": world.api.client_id,
            "client_secret": world.secret, "scope": f"{world.down.app_id_uri}/.default"}


def test_status_fault_with_retry_after_then_recovery(world: World) -> None:
    world.emu.faults.inject("token", "status", status=503, retry_after=2)
    failed = post_token(world.emu, cc_data(world))
    assert failed.headers["Retry-After"] == "2"
    assert_entra_error(failed, 503, "temporarily_unavailable", 50000)
    assert post_token(world.emu, cc_data(world)).status_code == 200
    statuses = [(c["status"], c.get("fault")) for c in world.entra.calls("client_credentials")]
    assert statuses == [(503, "status"), (200, None)]


def test_status_500_reaches_msal_as_an_http_error(world: World) -> None:
    world.emu.faults.inject("token", "status", status=500)
    with pytest.raises(Exception, match="500"):
        world.cca().acquire_token_for_client([f"{world.down.app_id_uri}/.default"])
    assert world.emu.faults.pending("token") == 0


def test_count_repeats_a_fault(world: World) -> None:
    world.emu.faults.inject("token", "status", count=3, status=429, retry_after=1)
    statuses = [post_token(world.emu, cc_data(world)).status_code for _ in range(4)]
    assert statuses == [429, 429, 429, 200]


def test_delay_fault(entra: EntraTestHelper) -> None:
    emu = entra.emulator
    emu.faults.inject("jwks", "delay", delay=0.4)
    with session_for(emu) as session:
        started = time.monotonic()
        response = session.get(emu.jwks_uri(), timeout=10)
        elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["keys"]
    assert elapsed >= 0.4
    assert entra.calls(endpoint="jwks")[-1]["fault"] == "delay"


def test_drop_fault_closes_the_connection(entra: EntraTestHelper) -> None:
    emu = entra.emulator
    emu.faults.inject("discovery", "drop")
    with session_for(emu) as session:
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(emu.discovery_url(), timeout=10)
        assert session.get(emu.discovery_url(), timeout=10).status_code == 200
    recorded = entra.calls(endpoint="discovery")
    assert [(c["status"], c.get("fault")) for c in recorded] == [(None, "drop"), (200, None)]


def test_drop_fault_on_the_token_endpoint_reaches_msal(world: World) -> None:
    world.emu.faults.inject("token", "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        world.cca().acquire_token_for_client([f"{world.down.app_id_uri}/.default"])


def test_malformed_fault_sends_garbage(world: World) -> None:
    world.emu.faults.inject("token", "malformed")
    response = post_token(world.emu, cc_data(world))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    world.emu.faults.inject("token", "malformed")
    with pytest.raises(ValueError):
        world.cca().acquire_token_for_client([f"{world.down.app_id_uri}/.default"])


def test_discovery_fault_breaks_msal_start_up(world: World) -> None:
    world.emu.faults.inject("discovery", "status", status=503)
    with pytest.raises(Exception, match="503"):
        world.cca()


def test_wildcard_applies_to_any_endpoint(entra: EntraTestHelper) -> None:
    emu = entra.emulator
    emu.faults.inject("*", "status", count=2, status=500)
    with session_for(emu) as session:
        assert session.get(emu.jwks_uri(), timeout=10).status_code == 500
        assert session.get(emu.discovery_url(), timeout=10).status_code == 500
        assert session.get(emu.discovery_url(), timeout=10).status_code == 200
    assert [f.endpoint for f in emu.faults.applied] == ["*", "*"]


def test_clear_and_validation(entra_emulator: EntraEmulator) -> None:
    faults = entra_emulator.faults
    faults.inject("jwks", "drop", count=5)
    assert faults.pending("jwks") == 5 and faults.pending() == 5
    faults.clear()
    assert faults.pending() == 0
    with pytest.raises(ValueError):
        faults.inject("nowhere", "drop")
    with pytest.raises(ValueError):
        faults.inject("token", "explode")
    with pytest.raises(ValueError):
        faults.inject("token", "status", status=200)
    with pytest.raises(ValueError):
        faults.inject("token", "delay")
    with pytest.raises(ValueError):
        faults.inject("token", "json", status=100)


def test_json_fault_answers_a_body_of_the_tests_own(world: World) -> None:
    world.emu.faults.inject("token", "json", body={"access_token": "x",
                                                   "expires_in": float("inf")})
    odd = post_token(world.emu, cc_data(world))
    assert odd.status_code == 200
    assert odd.headers["Content-Type"].startswith("application/json")
    assert odd.text == '{"access_token": "x", "expires_in": Infinity}'
    world.emu.faults.inject("token", "json", status=400, body={"error": "invalid_grant"})
    refused = post_token(world.emu, cc_data(world))
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_grant"})
    assert post_token(world.emu, cc_data(world)).json()["access_token"] != "x"  # faults used up
    assert [c.get("fault") for c in world.entra.calls("client_credentials")] == [
        "json", "json", None]


def test_hold_fault_answers_once_released(entra: EntraTestHelper) -> None:
    emu = entra.emulator
    hold = emu.faults.hold("jwks")
    answers: list[requests.Response] = []
    with session_for(emu) as session:
        fetch = threading.Thread(target=lambda: answers.append(
            session.get(emu.jwks_uri(), timeout=30)))
        fetch.start()
        assert hold.wait_reached()
        assert answers == [] and entra.calls(endpoint="jwks") == []  # held: not answered yet
        hold.release()
        fetch.join(10)
    assert answers[0].status_code == 200 and answers[0].json()["keys"]
    assert entra.calls(endpoint="jwks")[-1]["fault"] == "hold"


def test_clearing_faults_releases_held_calls(entra: EntraTestHelper) -> None:
    emu = entra.emulator
    hold = emu.faults.hold("discovery", timeout=60)
    with session_for(emu) as session:
        fetch = threading.Thread(target=lambda: session.get(emu.discovery_url(), timeout=60))
        fetch.start()
        assert hold.wait_reached()
        emu.faults.clear()
        fetch.join(10)
        assert not fetch.is_alive()


def test_unreachable_refuses_connections_then_serves_the_same_directory(
        private_emulator: EntraEmulator) -> None:
    emu = private_emulator
    api = emu.register_app("kept", scopes=["read"])
    kid = emu.signing_kid
    with emu.unreachable(), session_for(emu) as session:
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(emu.discovery_url(), timeout=10)
    with session_for(emu) as session:
        assert session.get(emu.discovery_url(), timeout=10).status_code == 200
        keys = session.get(emu.jwks_uri(), timeout=10).json()["keys"]
    assert kid in {key["kid"] for key in keys}
    assert emu.get_app(api.client_id) is api
