"""Helpers of the test suite, each written once; the fixtures built on them are in conftest.py.

- ``jose``: base64url, JWT segments, hand-signed and re-signed tokens, attacker keys;
- ``checks``: what flask-obo's answers must look like (RFC 6750 challenges, RFC 9457 bodies,
  nothing of a token echoed), and Entra's error shape for the emulator's own answers;
- ``timing``: a clock tests move by hand, and ``wait_for`` (an observable condition);
- ``apps``: a protected API (``build_api``) and a middle tier calling a downstream API
  (``build_middle``, ``Middle``), shared by the in-process tests and gunicorn;
- ``servers``: loopback servers of the security suites (an attacker's, an EC authority);
- ``world``: the emulator suites' cast (``World``);
- ``redis``: throwaway redis-servers, their keys and values, and leak searches in them;
- ``processes``: apps in processes of their own (gunicorn, a Celery worker) configured from
  the environment, and stopping them.

The downstream API stand-in, the loopback server and the Entra emulator are the product's own
(``flask_obo.testing``): the suite uses what users get.
"""
