"""supcon.train.runinfo: a run from uncommitted code keeps the patch that gives its code from the commit.

A temporary git repository stands in for the checkout (runinfo.REPO_ROOT is monkeypatched), with the package,
the runner, the recipes and tests; the run is a stand-in with the attributes `write_env` reads. The patch is
checked by applying it to a fresh clone of the commit: the clone's package, runner and recipes must then equal
the dirty checkout's, byte for byte.
"""

import hashlib
import json
import os
import subprocess
import types

import pytest

from supcon import workdir as wd
from supcon.train import runinfo, stages

BINARY = bytes(range(256)) * 4  # NUL bytes and bytes that are not UTF-8: the patch must carry them


def _git(root, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                          capture_output=True, text=True, check=True).stdout.strip()


def _write(root, path, content):
    full = root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        full.write_bytes(content)
    else:
        full.write_text(content)


COMMITTED = {
    "supcon/__init__.py": "",
    "supcon/losses.py": "TEMPERATURE = 0.1\n\ndef loss(x):\n    return x\n",
    "supcon/old.py": "GONE = True\n",
    "recipes/a.gin": "WIDTH = 0.25\n",
    "runner.py": "print('runner')\n",
    "tests/test_x.py": "def test_x():\n    pass\n",
    "README.md": "# checkout\n",
    ".gitignore": "__pycache__/\n",
}


@pytest.fixture
def repo(tmp_path):
    """A committed checkout: package, runner, recipes, tests, README."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    for path, content in COMMITTED.items():
        _write(root, path, content)
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return root


def _dirty_the_code(root):
    """Every kind of change under supcon/, runner.py and recipes/, and changes elsewhere that must not count."""
    _write(root, "supcon/losses.py", "TEMPERATURE = 0.5  # changed\n\ndef loss(x):\n    return 2 * x\n")  # unstaged
    (root / "supcon" / "old.py").unlink()  # deleted
    _write(root, "recipes/a.gin", "WIDTH = 0.5\n")
    _git(root, "add", "recipes/a.gin")  # staged
    _write(root, "recipes/new.gin", "include 'a.gin'\nDEPTH = 18\n")  # untracked recipe
    _write(root, "supcon/data/blob.bin", BINARY)  # untracked binary file in an untracked folder
    _write(root, "supcon/__pycache__/losses.cpython-311.pyc", b"\x00ignored")  # ignored: not code
    _write(root, "tests/test_x.py", "def test_x():\n    assert True\n")  # outside: does not count
    _write(root, "tests/test_new.py", "def test_new():\n    pass\n")
    _write(root, "README.md", "# checkout, edited\n")


DIRTY_PATHS = ("recipes/a.gin", "recipes/new.gin", "supcon/data/blob.bin", "supcon/losses.py", "supcon/old.py")


def _tree(root, top) -> dict[str, bytes]:
    found = {}
    for folder, dirs, files in os.walk(root / top):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", ".git")]
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = open(path, "rb").read()
    return found


def _code(root) -> dict[str, bytes]:
    """The package, the runner and the recipes as files: {path: bytes}."""
    return {**_tree(root, "supcon"), **_tree(root, "recipes"), "runner.py": (root / "runner.py").read_bytes()}


def test_a_clean_checkout_has_no_patch(repo):
    state = runinfo.code_state(str(repo))
    assert state == runinfo.CodeState(_git(repo, "rev-parse", "HEAD"))
    assert not state.dirty and state.patch == b"" and state.patch_sha256 is None


def test_the_patch_applied_to_the_commit_gives_the_dirty_code(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    _dirty_the_code(repo)
    index = repo / ".git" / "index"
    index_before = (index.read_bytes(), os.stat(index).st_mtime_ns)
    state = runinfo.code_state(str(repo))
    assert (index.read_bytes(), os.stat(index).st_mtime_ns) == index_before  # the user's index is untouched
    assert state.sha == head and state.dirty and state.dirty_paths == DIRTY_PATHS
    text = state.patch.decode("utf-8", "replace")
    assert "diff --git a/supcon/losses.py b/supcon/losses.py" in text and "+TEMPERATURE = 0.5  # changed" in text
    assert "diff --git a/supcon/old.py b/supcon/old.py\ndeleted file mode" in text
    assert "diff --git a/recipes/a.gin b/recipes/a.gin" in text and "+WIDTH = 0.5" in text  # staged, against HEAD
    assert "diff --git a/recipes/new.gin b/recipes/new.gin\nnew file mode 100644" in text
    assert "diff --git a/supcon/data/blob.bin b/supcon/data/blob.bin\nnew file mode 100644" in text
    assert "GIT binary patch" in text
    assert "tests/" not in text and "README" not in text and "__pycache__" not in text
    assert state.patch_sha256 == hashlib.sha256(state.patch).hexdigest()

    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert _git(clone, "rev-parse", "HEAD") == head
    (tmp_path / "run.patch").write_bytes(state.patch)
    _git(clone, "apply", str(tmp_path / "run.patch"))
    assert _code(clone) == _code(repo)  # the package, runner and recipes the run ran
    assert (clone / "tests" / "test_x.py").read_text() == COMMITTED["tests/test_x.py"]  # the rest: the commit's
    assert not (clone / "tests" / "test_new.py").exists()


def test_changes_outside_the_package_runner_and_recipes_are_clean(repo):
    _write(repo, "tests/test_x.py", "def test_x():\n    assert 1\n")
    _write(repo, "tests/fixtures/new.json", "{}\n")
    _write(repo, "reports/quickstart/README.md", "# report\n")
    _write(repo, "README.md", "# edited\n")
    head = _git(repo, "rev-parse", "HEAD")
    assert runinfo.code_state(str(repo)) == runinfo.CodeState(head)
    assert runinfo.git_state(str(repo)) == (head, False)
    _write(repo, "runner.py", "print('changed runner')\n")
    state = runinfo.code_state(str(repo))
    assert state.dirty_paths == ("runner.py",) and runinfo.git_state(str(repo)) == (head, True)
    assert state.patch.startswith(b"diff --git a/runner.py b/runner.py\n")


def _run(run_dir):
    """A stand-in for a Run with what write_env reads."""
    encoder = types.SimpleNamespace(depth=18, width_multiplier=0.25, cifar_stem=True, architecture="resnet_v1",
                                    trainable_weights=[types.SimpleNamespace(shape=(10, 10))])
    stage = types.SimpleNamespace(name="pretrain", epochs=1.0, train_encoder=True)
    return types.SimpleNamespace(
        dir=str(run_dir), config=types.SimpleNamespace(dataset="digits", batch_size=32, mixed_precision=False),
        mixed_precision=False,
        encoder=encoder, input_shape=(8, 8, 1), train_examples=64, source=types.SimpleNamespace(image_shape=(8, 8, 1)),
        plan=[stages.PlannedStage(stage, 0, 32, 2.0, 0, 2)], strategy=object(), replicas=1,
    )


def test_env_json_and_the_run_dir_keep_the_patch_of_the_run(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(runinfo, "REPO_ROOT", str(repo))
    head = _git(repo, "rev-parse", "HEAD")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _dirty_the_code(repo)
    runinfo.write_env(_run(run_dir))
    env = json.loads((run_dir / wd.ENV).read_text())
    patch = (run_dir / wd.PATCH).read_bytes()
    assert patch == runinfo.code_state(str(repo)).patch
    assert (env["git_sha"], env["git_dirty"], env["git_patch"]) == (head, True, wd.PATCH)
    assert env["git_dirty_paths"] == list(DIRTY_PATHS)
    assert env["git_patch_sha256"] == hashlib.sha256(patch).hexdigest()

    # Scoring it again (mode 'eval') from other code keeps the training's patch and writes its own.
    _write(repo, "supcon/losses.py", "TEMPERATURE = 0.7\n")
    runinfo.write_env(_run(run_dir), wd.EVAL_ENV)
    assert (run_dir / wd.PATCH).read_bytes() == patch
    eval_env = json.loads((run_dir / wd.EVAL_ENV).read_text())
    assert eval_env["git_patch"] == wd.EVAL_PATCH and b"+TEMPERATURE = 0.7" in (run_dir / wd.EVAL_PATCH).read_bytes()
    assert eval_env["git_patch_sha256"] == hashlib.sha256((run_dir / wd.EVAL_PATCH).read_bytes()).hexdigest()

    # Resumed after the changes were committed (tests/ still edited): clean, and the stale patch goes.
    _git(repo, "add", "supcon", "recipes")
    _git(repo, "commit", "-q", "-m", "second")
    runinfo.write_env(_run(run_dir))
    env = json.loads((run_dir / wd.ENV).read_text())
    assert (env["git_sha"], env["git_dirty"]) == (_git(repo, "rev-parse", "HEAD"), False)
    assert (env["git_dirty_paths"], env["git_patch"], env["git_patch_sha256"]) == ([], None, None)
    assert not (run_dir / wd.PATCH).exists()
