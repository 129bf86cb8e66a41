"""The package as users import it: any module first, and one root for every exception."""

from __future__ import annotations

import inspect
import pkgutil
import subprocess
import sys

import flask_obo
from flask_obo import errors


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(flask_obo.__path__, "flask_obo.")
                  if ".testing" not in info.name)


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    # An import circle shows as an ImportError for whichever module of it is imported first.
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]:\n"
              "    for loaded in [m for m in sys.modules if m.startswith('flask_obo')]:\n"
              "        del sys.modules[loaded]\n"
              "    importlib.import_module(name)\n")
    modules = _modules()
    assert "flask_obo.cache.token_cache" in modules and len(modules) > 20
    result = subprocess.run([sys.executable, "-c", script, *modules], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_one_except_clause_catches_every_flask_obo_error() -> None:
    exported = [getattr(flask_obo, name) for name in flask_obo.__all__]
    classes = [obj for obj in vars(errors).values()
               if inspect.isclass(obj) and issubclass(obj, Exception)
               and obj.__module__ == errors.__name__]
    classes += [obj for obj in exported if inspect.isclass(obj) and issubclass(obj, Exception)]
    assert len(classes) > 10
    for cls in classes:
        assert issubclass(cls, flask_obo.FlaskOBOError), cls
    # The operator's errors keep their documented bases too.
    assert issubclass(flask_obo.ConfigError, RuntimeError)
