"""The built distribution works on its own: sdist and wheel build, pass ``twine check``, and the
wheel installed into a clean virtualenv (no checkout on the path) runs the command, the demo and
the examples.

Slow by nature (a build and a virtualenv); the wheel's dependencies come from the registry held
to the lock's versions, so pip's cache usually answers.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from wsgi_server import EXAMPLES, ROOT, ServerProcess, free_port, server_env

import wsgi_session

LOCK = ROOT / "requirements" / "dev.lock"
SECRET = secrets.token_hex(32)


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist, and a wheel built from that sdist (what ``python -m build`` does)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and the extras the examples use; its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", venv, cwd=venv)
    (wheel,) = dist.glob("*.whl")
    pip = venv / "bin" / "pip"
    run(pip, "install", "--quiet", "-c", LOCK, f"{wheel}[flask,gunicorn]", cwd=venv)
    return venv / "bin"


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A working folder away from the checkout, holding copies of the examples."""
    for example in ("wsgi_app.py", "flask_app.py"):
        shutil.copy(EXAMPLES / example, tmp_path / example)
    yield tmp_path


def test_the_distributions_pass_twine_check_and_carry_what_users_need(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith(f"wsgi_session-{wsgi_session.__version__}-")
    checked = run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel, cwd=dist)
    assert checked.count("PASSED") == 2, checked
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(
            f"wsgi_session-{wsgi_session.__version__}.dist-info/METADATA"
        ).decode()
    assert "wsgi_session/py.typed" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "examples/")) for name in names)
    assert f"Version: {wsgi_session.__version__}" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "# Changelog" in metadata  # the long description: README, then the changelog
    assert "Requires-Dist: werkzeug>=" in metadata  # ranges, never the lock's pins


def test_the_installed_wheel_imports_from_its_own_site_packages(
    installed: Path, outside: Path
) -> None:
    where = run(
        installed / "python", "-c", "import wsgi_session; print(wsgi_session.__file__)", cwd=outside
    )
    assert "site-packages" in where and str(ROOT) not in where


def test_check_runs_from_the_wheel(installed: Path, outside: Path) -> None:
    env = server_env(
        outside,
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_STORE=f"sqlite://{outside}/sessions.db",
    )
    env.pop("PYTHONPATH", None)
    output = run(installed / "wsgi-session", "check", cwd=outside, env=env)
    assert "sqlite" in output.lower()


def serve(command: list[str | Path], cwd: Path, port: int, **settings: str) -> ServerProcess:
    env = server_env(cwd, **settings)
    env.pop("PYTHONPATH", None)
    return ServerProcess(
        [str(part) for part in command], env=env, cwd=cwd, port=port, log_dir=cwd
    ).start()


def test_the_demo_runs_from_the_wheel(installed: Path, outside: Path) -> None:
    port = free_port()
    server = serve([installed / "wsgi-session", "demo", "--port", str(port)], outside, port)
    try:
        browser = requests.Session()
        page = browser.get(server.url, timeout=10)
        assert page.status_code == 200 and "wsgi_session demo" in page.text
        assert "session" in browser.cookies
        assert "<strong>2</strong>" in browser.get(server.url, timeout=10).text
    finally:
        server.stop()


def test_the_examples_run_from_the_wheel(installed: Path, outside: Path) -> None:
    port = free_port()
    plain = serve(
        [installed / "python", "wsgi_app.py", str(port)],
        outside,
        port,
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_STORE=f"sqlite://{outside}/plain.db",
    )
    try:
        browser = requests.Session()
        assert "been here 1 time " in browser.get(plain.url, timeout=10).text
        assert "been here 2 times " in browser.get(plain.url, timeout=10).text
    finally:
        plain.stop()

    port = free_port()
    flask_app = serve(
        [installed / "gunicorn", "--bind", f"127.0.0.1:{port}", "flask_app:app"],
        outside,
        port,
        FLASK_SECRET_KEY=SECRET,
        FLASK_SESSION_STORE=f"sqlite://{outside}/flask.db",
    )
    try:
        browser = requests.Session()
        assert browser.get(flask_app.url, timeout=10).json()["visits"] == 1
        assert browser.get(flask_app.url, timeout=10).json()["visits"] == 2
    finally:
        flask_app.stop()
