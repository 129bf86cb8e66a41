"""The package as PyPI would ship it: an sdist and a wheel that twine accepts, requirements that
are exactly what flask_obo imports, and, installed from the wheel into a fresh virtualenv (not
editable), the README's and the documentation's example apps pass their own tests.

The fresh virtualenv gets the wheel with ``--no-deps --no-index`` and finds its dependencies
in this project's virtualenv through a ``.pth`` line (no network, nothing downloaded).
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.doc_blocks import ROOT, example_projects

pytestmark = pytest.mark.slow

# import name -> the extra that installs it
_OPTIONAL = {"redis": "redis", "opentelemetry": "otel", "azure": "azure"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
                    "--outdir", str(out), str(ROOT)], check=True, capture_output=True,
                   timeout=300)
    return out


def _one(directory: Path, pattern: str) -> Path:
    [found] = directory.glob(pattern)
    return found


def test_twine_accepts_the_sdist_and_the_wheel(dist: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                             *map(str, sorted(dist.iterdir()))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_the_sdist_carries_the_license_and_no_tests(dist: Path) -> None:
    with tarfile.open(_one(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "flask_obo/py.typed",
            "flask_obo/testing/pytest_plugin.py"} <= names
    assert not [name for name in names if name.startswith(("tests/", "samples/", "docs/"))]


def _third_party_imports(*, testing: bool) -> set[str]:
    """Top-level names flask_obo imports that neither the standard library nor it provides:
    those of the emulator (``flask_obo/testing``), or those of the rest."""
    found: set[str] = set()
    for path in (ROOT / "flask_obo").rglob("*.py"):
        if ("testing" in path.parts) != testing:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names
            and name != "flask_obo" and not name.startswith("_")}


def _distributions(modules: set[str]) -> set[str]:
    providers = importlib.metadata.packages_distributions()
    return {canonicalize_name(providers[module][0]) for module in modules}


def test_the_requirements_are_exactly_what_flask_obo_imports(dist: Path) -> None:
    with zipfile.ZipFile(_one(dist, "*.whl")) as wheel:
        metadata = wheel.read("flask_obo-0.1.0.dist-info/METADATA").decode()
    required: set[str] = set()
    extras: dict[str, set[str]] = {}
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: "):
            requirement = Requirement(line.removeprefix("Requires-Dist: "))
            name = canonicalize_name(requirement.name)
            if requirement.marker is None:
                required.add(name)
            else:
                extra = str(requirement.marker).split("==")[-1].strip(" \"'")
                extras.setdefault(extra, set()).add(name)
    core = _third_party_imports(testing=False)
    optional = {module for module in core if module in _OPTIONAL}
    assert _distributions(core - optional) == required
    providers = importlib.metadata.packages_distributions()
    # A namespace package (opentelemetry, azure) comes in several distributions.
    for module in optional:
        assert {canonicalize_name(name) for name in providers[module]} & extras[_OPTIONAL[module]]
    emulator_only = _third_party_imports(testing=True) - core
    assert emulator_only and _distributions(emulator_only) <= extras["testing"]
    assert "authlib" not in required and "joserfc" in required


# -- installed from the wheel ------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtualenv with flask-obo installed from the wheel."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(_one(dist, "*.whl"))], check=True,
                   capture_output=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies, from this project's virtualenv, after the wheel's own site-packages.
    Path(site, "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _clean_env() -> dict[str, str]:
    # A user's shell: none of this repository's paths, no FLASK_ settings of a developer.
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("FLASK_", "PYTHON", "PYTEST")) and k != "VIRTUAL_ENV"}


def test_the_installed_package_is_the_wheel_not_this_checkout(installed: Path,
                                                             tmp_path: Path) -> None:
    result = subprocess.run([str(installed), "-c", "import flask_obo; print(flask_obo.__file__)"],
                            cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
                            check=True)
    assert Path(result.stdout.strip()).is_relative_to(installed.parent.parent)


@pytest.fixture
def project(request: pytest.FixtureRequest, installed: Path, tmp_path: Path) -> Iterator[Path]:
    document: Path = request.param
    files = example_projects()[document]
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    yield tmp_path


@pytest.mark.parametrize("project", sorted(example_projects()), indirect=True,
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_example_project_passes_against_the_installed_wheel(installed: Path,
                                                                project: Path) -> None:
    result = subprocess.run([str(installed), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "no:randomly"], cwd=project, env=_clean_env(),
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " passed" in output and "skipped" not in output and "failed" not in output, output


def test_the_declared_python_versions_agree() -> None:
    # CI tests one Python (.ci/run on this machine's): the classifiers, python_requires, the
    # README, ruff and mypy name that one.
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    minimum = parser["options"]["python_requires"].removeprefix(">=")
    declared = {line.rsplit(":: ", 1)[1] for line in parser["metadata"]["classifiers"].split("\n")
                if line.startswith("Programming Language :: Python :: 3.")}
    assert declared == {minimum}
    assert f"**Python {minimum}**, the version its CI tests" in (ROOT / "README.md").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'target-version = "py{minimum.replace(".", "")}"' in pyproject
    assert f'python_version = "{minimum}"' in pyproject
