"""git integration in real temporary repositories: `weightkit git-config`, the diff driver and
the textconv filter, through `git diff`, `git log -p` and `git show`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightkit
from weightkit.converters.store import Store, Tensor

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

CLI = [sys.executable, "-m", "weightkit.cli"]


def environment(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "XDG_CONFIG"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_PAGER="cat", PAGER="cat",
               LC_ALL="C")
    return env


def sh(args: list[str], cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def repo(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    path = tmp_path / "repo"
    path.mkdir()
    env = environment(home)
    sh(["git", "init", "-q"], path, env)
    sh(["git", "config", "user.email", "test@example.com"], path, env)
    sh(["git", "config", "user.name", "Test"], path, env)
    return path, env


def weights(path: Path, scale: float, extra: bool = False) -> None:
    rng = np.random.default_rng(0)
    arrays = {"dense/kernel": rng.standard_normal((4, 3)).astype(np.float32) * np.float32(scale),
              "dense/bias": np.zeros(3, np.float32)}
    if extra:
        arrays["head/kernel"] = np.ones((3, 2), np.float32)
    weightkit.save(Store({n: Tensor.from_array(a, {"key": n, "role": "weight"})
                          for n, a in arrays.items()}), path)


def commit(repo_path: Path, env: dict, message: str) -> None:
    sh(["git", "add", "-A"], repo_path, env)
    sh(["git", "commit", "-q", "-m", message], repo_path, env)


def test_config_is_idempotent_and_disable_removes_it(repo):
    path, env = repo
    (path / ".gitattributes").write_text("*.png binary\n")
    first = sh(CLI + ["git-config"], path, env)
    assert "weightkit" in first.stdout
    attributes = (path / ".gitattributes").read_text()
    config = sh(["git", "config", "--local", "--get-regexp", r"^diff\.weightkit\."], path, env).stdout
    sh(CLI + ["git-config"], path, env)
    assert (path / ".gitattributes").read_text() == attributes
    assert sh(["git", "config", "--local", "--get-regexp", r"^diff\."], path, env).stdout == config
    assert attributes.splitlines() == ["*.png binary", "*.h5 diff=weightkit", "*.keras diff=weightkit",
                                       "*.safetensors diff=weightkit", "*.npz diff=weightkit",
                                       "*.index diff=weightkit"]
    assert "git-diff-driver" in config and "--textconv" in config
    sh(CLI + ["git-config", "--disable"], path, env)
    sh(CLI + ["git-config", "--disable"], path, env)
    assert (path / ".gitattributes").read_text() == "*.png binary\n"
    assert sh(["git", "config", "--local", "--get-regexp", r"^diff\."], path, env, ok=False).stdout == ""


def test_global_config(repo, tmp_path):
    path, env = repo
    sh(CLI + ["git-config", "--global"], tmp_path, env)
    attributes = Path(env["HOME"]) / ".config" / "git" / "attributes"
    assert "*.h5 diff=weightkit" in attributes.read_text()
    assert "git-diff-driver" in sh(["git", "config", "--global", "diff.weightkit.command"], path, env).stdout
    assert not (path / ".gitattributes").exists()
    weights(path / "m.safetensors", 1.0)
    commit(path, env, "one")
    weights(path / "m.safetensors", 2.0)
    out = sh(["git", "diff"], path, env).stdout
    assert "different: 1 same, 1 changed" in out
    sh(CLI + ["git-config", "--global", "--disable"], tmp_path, env)
    assert not attributes.exists()


def test_config_outside_a_repository(tmp_path):
    env = environment(tmp_path)
    result = sh(CLI + ["git-config"], tmp_path, env, ok=False)
    assert result.returncode == 2 and "not inside a git repository" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_git_diff_and_log_show_weights(repo, suffix):
    path, env = repo
    sh(CLI + ["git-config"], path, env)
    name = "model" + suffix
    weights(path / name, 1.0)
    commit(path, env, "add model")
    weights(path / name, 1.5, extra=True)
    commit(path, env, "retrain")

    diff = sh(["git", "diff", "HEAD~1", "HEAD"], path, env).stdout
    assert f"--- a/{name}" in diff and f"+++ b/{name}" in diff
    assert "status" in diff and "max abs" in diff  # the table header
    lines = {line.split()[1]: line.split()[0] for line in diff.splitlines()
             if line.startswith(("changed", "added", "same", "removed"))}
    assert lines == {"dense/kernel": "changed", "head/kernel": "added"}
    assert diff.splitlines()[-1].startswith("different: 1 same, 1 changed, 1 added")

    log = sh(["git", "log", "-p"], path, env).stdout
    changed = [line for line in log.splitlines() if line.startswith(("-dense", "+dense", "+head"))]
    assert [line.split()[0] for line in changed] == [
        "-dense/kernel", "+dense/kernel", "+head/kernel",  # retrain
        "+dense/kernel", "+dense/bias"]  # add model: every variable new
    assert "retrain" in log and "blake2b:" in log

    ext = sh(["git", "log", "-p", "--ext-diff", "-1"], path, env).stdout
    assert "different: 1 same, 1 changed, 1 added" in ext

    show = sh(["git", "show", "HEAD~1"], path, env).stdout  # added file: /dev/null on the left
    assert "+dense/kernel" in show and "+dense/bias" in show


def test_added_and_deleted_files_through_the_driver(repo):
    path, env = repo
    sh(CLI + ["git-config"], path, env)
    commit(path, env, "set up")
    weights(path / "m.npz", 1.0)
    commit(path, env, "add")
    (path / "m.npz").unlink()
    commit(path, env, "delete")
    added = sh(["git", "diff", "HEAD~2", "HEAD~1"], path, env).stdout
    assert "--- /dev/null" in added and "different: 2 added" in added
    removed = sh(["git", "diff", "HEAD~1", "HEAD"], path, env).stdout
    assert "+++ /dev/null" in removed and "different: 2 removed" in removed


def test_h5_before_and_after_training(repo, fixtures_dir):
    path, env = repo
    sh(CLI + ["git-config"], path, env)
    shutil.copy(fixtures_dir / "conv--tfkeras-before-full.h5", path / "model.h5")
    commit(path, env, "before")
    shutil.copy(fixtures_dir / "conv--tfkeras-after-full.h5", path / "model.h5")
    commit(path, env, "one more step")
    diff = sh(["git", "diff", "HEAD~1", "HEAD"], path, env).stdout
    assert "--- a/model.h5 (keras-h5)" in diff
    rows = [line.split()[:2] for line in diff.splitlines() if line.startswith("changed ")]
    assert ["changed", "c1/kernel"] in rows and ["changed", "iteration"] in rows
    assert diff.splitlines()[-1].startswith("different: 21 changed")
    log = sh(["git", "log", "-p", "-1"], path, env).stdout
    assert "-c1/kernel (3, 3, 3, 4) float32 blake2b:" in log
    assert "+c1/kernel (3, 3, 3, 4) float32 blake2b:" in log


def test_worktree_change(repo):
    path, env = repo
    sh(CLI + ["git-config"], path, env)
    weights(path / "w.safetensors", 1.0)
    commit(path, env, "one")
    assert sh(["git", "diff"], path, env).stdout == ""
    weights(path / "w.safetensors", 1.0 + 1e-6)
    assert "1 changed" in sh(["git", "diff"], path, env).stdout


def test_driver_arguments(tmp_path):
    env = environment(tmp_path)
    weights(tmp_path / "old.npz", 1.0)
    weights(tmp_path / "new.npz", 3.0)
    seven = ["w.npz", str(tmp_path / "old.npz"), "a" * 40, "100644",
             str(tmp_path / "new.npz"), "b" * 40, "100644"]
    out = sh(CLI + ["git-diff-driver", *seven], tmp_path, env)
    assert out.returncode == 0 and "1 changed" in out.stdout
    nine = seven + ["renamed.npz", "similarity index 90%\n"]
    assert "b/renamed.npz" in sh(CLI + ["git-diff-driver", *nine], tmp_path, env).stdout
    unmerged = sh(CLI + ["git-diff-driver", "w.npz"], tmp_path, env)
    assert unmerged.stdout.strip() == "* Unmerged path w.npz"
    wrong = sh(CLI + ["git-diff-driver", "a", "b", "c"], tmp_path, env, ok=False)
    assert wrong.returncode == 2 and len(wrong.stderr.splitlines()) == 1


def test_driver_reports_a_bad_file_without_stopping_git(tmp_path):
    env = environment(tmp_path)
    weights(tmp_path / "good.npz", 1.0)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken zip")
    args = ["x.npz", str(tmp_path / "good.npz"), "0" * 40, "100644",
            str(tmp_path / "bad.npz"), "1" * 40, "100644"]
    result = sh(CLI + ["git-diff-driver", *args], tmp_path, env)
    assert "weightkit: cannot compare:" in result.stdout and "Traceback" not in result.stderr
    conv = sh(CLI + ["git-diff-driver", "--textconv", str(tmp_path / "bad.npz")], tmp_path, env)
    assert conv.stdout.count("\n") == 1 and conv.stdout.startswith("weightkit: cannot read: ")
    assert str(tmp_path) not in conv.stdout  # git's temporary names would make every diff differ
