"""The suite's own setup (pyproject.toml's pytest options, tests/conftest.py): a worker that crashes fails its test
and the session goes on to its end, instead of hanging until CI's time limit."""

import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CRASHING = '''
import os
import pytest

@pytest.mark.parametrize("i", range(8))
def test_case(i):
    if i == 2:
        os.abort()  # as a segfault in a kernel would
'''


def test_a_crashed_worker_fails_its_test_and_the_session_ends(tmp_path):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        addopts = tomllib.load(f)["tool"]["pytest"]["ini_options"]["addopts"]
    (tmp_path / "test_crash.py").write_text(CRASHING)
    (tmp_path / "pytest.ini").write_text(f"[pytest]\naddopts = {addopts}\n")  # the project's options, not its conftest
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:randomly"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1 and "1 failed, 7 passed" in summary, proc.stdout[-2000:]
    assert "crashed while running 'test_crash.py::test_case[2]'" in proc.stdout
