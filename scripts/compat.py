"""``make compat``: the test suite at both ends of the ranges setup.cfg claims.

Two throw-away virtualenvs: one with every runtime dependency and integration at the lowest
version its range allows (uv's ``lowest-direct`` resolution: the floors, except where another
floor needs more, which the table shows), one with each at the newest the registry serves. The
tools the tests run with (pytest, hypothesis, selenium, ...) stay at the lock's versions in
both, so the only thing that moves is what users install. Each environment runs the whole
pytest suite; the end is a table of the versions and the results.

Not part of ``make test``: a release upstream must not turn CI red. Its results go in the
docs' development page; a floor that fails is raised in setup.cfg.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "dev.lock"
UV = Path(sys.executable).parent / "uv"

# The extras that are the library's own integrations; the rest (test, bench, docs) are ours.
DEVELOPMENT_EXTRAS = {"test", "bench", "docs"}
# Test tools whose version is tied to an integration's: they follow it instead of the lock.
FOLLOWERS = {"opentelemetry-sdk": "opentelemetry-api"}
# Needed only for lint, types and docs, which compat does not run.
NOT_FOR_PYTEST = {"mypy", "ruff", "django-stubs", "mkdocs", "uv", "py-spy"}


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _requirements(text: str) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line]


def integrations() -> list[Requirement]:
    """Runtime dependencies and every integration extra's requirements, once each."""
    config = _setup_cfg()
    found = {r.name.lower(): r for r in _requirements(config["options"]["install_requires"])}
    for extra, text in config["options.extras_require"].items():
        if extra not in DEVELOPMENT_EXTRAS:
            for requirement in _requirements(text):
                found.setdefault(requirement.name.lower(), requirement)
    return sorted(found.values(), key=lambda r: r.name.lower())


def test_tools(skip: set[str]) -> list[Requirement]:
    config = _setup_cfg()
    names = {r.name.lower(): r for r in _requirements(config["options.extras_require"]["test"])}
    return [r for name, r in sorted(names.items()) if name not in skip | NOT_FOR_PYTEST]


def locked_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^ ;]+)", line)
        if match:
            pins.setdefault(match.group(1).split("[")[0].lower(), match.group(2))
    return pins


def floor(requirement: Requirement) -> str:
    (lowest,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    return lowest


def inputs(end: str) -> list[str]:
    deps = integrations()
    names = {r.name.lower() for r in deps}
    pins = locked_versions()
    lines = [str(r) for r in deps]
    for tool in test_tools(names):
        name = tool.name.lower()
        if name in FOLLOWERS:
            lines.append(str(tool))
        else:
            lines.append(f"{tool.name}=={pins[name]}")
    return lines


def build(end: str, where: Path) -> Path:
    requirements = where / f"{end}.in"
    requirements.write_text("\n".join(inputs(end)) + "\n")
    resolved = where / f"{end}.txt"
    resolution = "lowest-direct" if end == "lowest" else "highest"
    subprocess.run(
        [
            UV,
            "pip",
            "compile",
            "--quiet",
            "--python",
            sys.executable,
            "--resolution",
            resolution,
            requirements,
            "-o",
            resolved,
        ],
        check=True,
    )
    venv = where / end
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, venv], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [UV, "pip", "install", "--quiet", "--python", python, "-r", resolved], check=True
    )
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "--no-deps",
            "--no-build-isolation",
            "-e",
            ROOT,
        ],
        check=True,
    )
    return python


def installed(python: Path, names: list[str]) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, sys\n"
        "for name in sys.argv[1:]:\n"
        "    print(name, m.version(name))\n"
    )
    out = subprocess.run([python, "-c", script, *names], check=True, capture_output=True, text=True)
    return dict(line.split() for line in out.stdout.splitlines())


def run_suite(python: Path, log: Path) -> tuple[int, str]:
    env = dict(os.environ)
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    env.pop("VIRTUAL_ENV", None)
    with log.open("w") as out:
        code = subprocess.run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PYTEST_ARGS],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return code, lines[-1] if lines else "(no output)"


PYTEST_ARGS: list[str] = []
ENDS = ("lowest", "newest")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the virtualenvs and logs")
    parser.add_argument(
        "--end", choices=ENDS, action="append", help="only this end (both by default)"
    )
    parser.add_argument(
        "pytest_args", nargs="*", help="passed to pytest (default: the whole suite)"
    )
    args = parser.parse_args()
    PYTEST_ARGS.extend(args.pytest_args)
    names = [r.name for r in integrations()]
    where = Path(tempfile.mkdtemp(prefix="wsgi-session-compat-"))
    versions: dict[str, dict[str, str]] = {}
    results: dict[str, tuple[int, str, float]] = {}
    ends = args.end or ENDS
    for end in ends:
        print(f"== {end}: building the virtualenv", flush=True)
        python = build(end, where)
        versions[end] = installed(python, names)
        print(f"== {end}: running the test suite", flush=True)
        started = time.monotonic()
        code, summary = run_suite(python, where / f"{end}.log")
        results[end] = (code, summary, time.monotonic() - started)
        print(f"== {end}: {summary}", flush=True)
    floors = {r.name: floor(r) for r in integrations()}
    print("\n| dependency | setup.cfg's floor | lowest tested | newest tested |\n|---|---|---|---|")
    for name in names:
        low, new = (versions.get(end, {}).get(name, "-") for end in ENDS)
        print(f"| {name} | {floors[name]} | {low} | {new} |")
    print()
    for end, (code, summary, seconds) in results.items():
        print(f"{end}: {summary} (exit {code}, {seconds:.0f} s); log: {where / (end + '.log')}")
    if not args.keep:
        for end in ends:
            subprocess.run(["rm", "-rf", str(where / end)], check=False)
    return max(code for code, _, _ in results.values())


if __name__ == "__main__":
    sys.exit(main())
