"""Every command the README shows is run here, in order, so the guide cannot rot.

``bash`` blocks: each ``kgrec …`` command (also inside ``a && b`` chains, with any
``NAME=value`` prefix) runs as a subprocess; one ending in `` &`` (``kgrec serve``) runs
in the background -- the next steps wait until its ``--port`` answers ``/health/ready``
-- and is stopped at the end; ``scripts/test`` is what CI runs itself, and the venv/pip
set-up is the CI's own install, so both are skipped.
``python`` blocks run as scripts. Everything runs in a scratch folder beside a
link to ``../shared``, so the README's relative paths work and nothing is written
into the repository. Neo4j commands go to the test server.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
SKIPPED_PREFIXES = ("scripts/test", "python3 -m venv", ". .venv/bin/activate", "pip install")

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]


def readme_steps() -> list[tuple[str, str]]:
    """(kind, text) in README order: kind 'cmd' (one shell command) or 'python'."""
    steps: list[tuple[str, str]] = []
    for lang, body in BLOCK.findall((REPO / "README.md").read_text()):
        if lang == "python":
            steps.append(("python", body))
        elif lang == "bash":
            for line in body.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if not line or line.startswith("#"):
                    continue
                for part in (p.strip() for p in line.split("&&")):
                    if part and not part.startswith(SKIPPED_PREFIXES):
                        steps.append(("cmd", part))
    return steps


def test_readme_has_commands():
    kinds = [k for k, _ in readme_steps()]
    assert kinds.count("cmd") >= 8 and "python" in kinds


def test_every_readme_command_runs(tmp_path, neo4j_uri, request):
    shared = request.getfixturevalue("gift_cards_dir").parents[1]  # ../shared, skip/fail rules apply
    from kg.stores.neo4j import Neo4jStore

    with Neo4jStore(neo4j_uri) as store:
        store.clear()
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared)
    (work / "examples").symlink_to(REPO / "examples")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEO4J_URI": ""}
    env.pop("NEO4J_URI")
    background: list[subprocess.Popen] = []
    try:
        run_steps(work, env, neo4j_uri, background)
    finally:
        for proc in background:
            proc.terminate()
            proc.wait(timeout=60)
    with Neo4jStore(neo4j_uri) as store:
        store.clear()


def run_steps(work: Path, env: dict, neo4j_uri: str, background: list) -> None:
    import time
    import urllib.request

    for kind, text in readme_steps():
        in_background = kind == "cmd" and text.endswith("&")
        text = text.rstrip("&").strip() if in_background else text
        if kind == "python":
            argv, step_env = [sys.executable, "-c", text], env
        else:
            words = shlex.split(text)
            step_env = dict(env)
            while words and re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", words[0]):
                name, value = words.pop(0).split("=", 1)
                step_env[name] = neo4j_uri if name == "NEO4J_URI" else value
            if words[0] == "kgrec":
                argv = [sys.executable, "-m", "fusion.cli", *words[1:]]
            elif words[0] == "python" and words[1].startswith("bench/"):
                continue  # benchmarks take minutes; they are run by hand (README table)
            else:
                argv = words
        if in_background:
            proc = subprocess.Popen(argv, cwd=work, env=step_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            background.append(proc)
            port = words[words.index("--port") + 1] if "--port" in words else "8000"
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
                        break
                except OSError:
                    assert proc.poll() is None, f"README step failed: {text}\n{proc.stderr.read()[-3000:]}"
                    time.sleep(0.5)
            continue
        done = subprocess.run(argv, cwd=work, env=step_env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"README step failed: {text}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
