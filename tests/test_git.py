"""git integration in real temporary repositories: `weightkit git-config`, the diff driver and
the textconv filter, through `git diff`, `git log -p` and `git show`."""
from __future__ import annotations

import json
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
    assert attributes.splitlines() == ["*.png binary", "*.safetensors diff=weightkit",
                                       "*.index diff=weightkit", "*.keras diff=weightkit",
                                       "*.npz diff=weightkit", "*.h5 diff=weightkit",
                                       "*.tflite diff=weightkit"]
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


def added_then_deleted(path: Path, env: dict, name: str, write) -> tuple[str, str]:
    """`git diff` of a commit adding file `name` (made by `write(target)`) and of the next,
    deleting it."""
    sh(CLI + ["git-config"], path, env)
    commit(path, env, "set up")
    write(path / name)
    commit(path, env, "add")
    (path / name).unlink()
    commit(path, env, "delete")
    return (sh(["git", "diff", "HEAD~2", "HEAD~1"], path, env).stdout,
            sh(["git", "diff", "HEAD~1", "HEAD"], path, env).stdout)


def test_added_and_deleted_files_through_the_driver(repo):
    path, env = repo
    added, removed = added_then_deleted(path, env, "m.npz", lambda target: weights(target, 1.0))
    assert "--- /dev/null" in added and "different: 2 added" in added
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


# --- checkpoints: git hands the driver the .index without its data files -------------------------

def checkpoint_files(fixtures_dir: Path, fixture: str, dest: Path, stem: str = "m.ckpt") -> None:
    """Copy a checkpoint fixture's .index and data files into `dest` as `stem.*`."""
    for source in fixtures_dir.glob(fixture + ".*"):
        shutil.copy(source, dest / (stem + source.name[len(fixture):]))


def table_rows(text: str) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in text.splitlines()
            if line.split()[:1] and line.split()[0] in
            ("same", "changed", "added", "removed", "renamed", "shape_changed", "dtype_changed")}


def test_checkpoint_index_diff_by_checksums(repo, fixtures_dir):
    """A Keras 3 checkpoint before and after a training step: `git diff` compares the two
    `.index` blobs by their entries' crc32c (no data files reach the driver), `git log -p`
    shows the textconv listing, and a working-tree change (old side a blob, new side a file
    with its data beside it) is compared the same way."""
    path, env = repo
    sh(CLI + ["git-config"], path, env)
    checkpoint_files(fixtures_dir, "conv--keras3-before.ckpt", path)
    commit(path, env, "before")
    checkpoint_files(fixtures_dir, "conv--keras3-after.ckpt", path)
    commit(path, env, "one more step")

    diff = sh(["git", "diff", "HEAD~1", "HEAD", "--", "m.ckpt.index"], path, env).stdout
    assert "--- a/m.ckpt.index (tf-checkpoint-index)" in diff
    assert "missing data shard" not in diff and "max abs" not in diff
    rows = table_rows(diff)
    assert rows["optimizer/_iterations"] == "changed" and rows["optimizer/_variables/13"] == "changed"
    assert "optimizer/_learning_rate" not in rows  # unchanged: listed with --all only
    assert diff.splitlines()[-1] == ("different: 1 same, 21 changed; compared by the checksums in "
                                     "the index, data files not read (no value statistics, no "
                                     "tolerance)")

    log = sh(["git", "log", "-p", "-1", "--", "m.ckpt.index"], path, env).stdout
    assert "# weightkit: tf-checkpoint-index, 22 variables" in log
    changed = [line for line in log.splitlines() if line.startswith(("-opt", "+opt"))]
    assert "-optimizer/_iterations [counter] () int64 crc32c:" in "\n".join(changed)
    assert [line[1:].rsplit(" ", 1)[0] for line in changed if line.startswith("+")] == \
        [line[1:].rsplit(" ", 1)[0] for line in changed if line.startswith("-")]
    assert " optimizer/_learning_rate [optimizer] () float32 crc32c:" in log  # context line

    checkpoint_files(fixtures_dir, "conv--keras3-before.ckpt", path)  # back, in the working tree
    work = sh(["git", "diff", "--", "m.ckpt.index"], path, env).stdout
    assert "different: 1 same, 21 changed; compared by the checksums" in work
    assert sh(["git", "diff", "HEAD~1", "--", "m.ckpt.index"], path, env).stdout == ""


def test_index_diff_statuses_and_json(repo, tmp_path):
    """Every status an index can tell, through the driver's JSON (valid against the schema, value
    statistics null); then an added and a deleted `.index` through git."""
    import jsonschema

    path, env = repo
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((4, 3)).astype(np.float32)
    old = {"dense/kernel": kernel, "dense/bias": np.zeros(3, np.float32),
           "emb": np.ones((5, 2), np.float32), "step": np.int64(3), "gone": np.ones(2, np.float32),
           "moved": np.arange(6, dtype=np.float32)}
    new = {"dense/kernel": kernel * 2, "dense/bias": np.zeros(3, np.float32),
           "emb": np.ones((6, 2), np.float32), "step": np.int32(3), "fresh": np.full(3, 7, np.float32),
           "renamed": np.arange(6, dtype=np.float32)}
    for name, arrays in (("old", old), ("new", new)):
        (tmp_path / name).mkdir()
        weightkit.save(Store.from_arrays(arrays), tmp_path / name / "m.ckpt", "tf-checkpoint")
    # git's temporary copies: the .index alone
    for name in ("old", "new"):
        (tmp_path / f"blob-{name}").mkdir()
        shutil.copy(tmp_path / name / "m.ckpt.index", tmp_path / f"blob-{name}" / "m.ckpt.index")
    args = ["m.ckpt.index", str(tmp_path / "blob-old" / "m.ckpt.index"), "0" * 40, "100644",
            str(tmp_path / "blob-new" / "m.ckpt.index"), "1" * 40, "100644"]
    out = sh(CLI + ["git-diff-driver", "--format", "json", *args], tmp_path, env).stdout
    doc = json.loads(out[out.index("{"):])
    schema = json.loads((Path(weightkit.__file__).parent / "diff" / "schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["a"]["format"] == doc["b"]["format"] == "tf-checkpoint-index"
    statuses = {e["name"]: e["status"] for e in doc["variables"]}
    assert statuses == {"dense/kernel": "changed", "dense/bias": "same", "emb": "shape_changed",
                        "step": "dtype_changed", "gone": "removed", "fresh": "added",
                        "moved": "renamed"}
    assert all(e["mismatched"] is None and e["max_abs_diff"] is None for e in doc["variables"])
    assert doc["summary"]["compared_elements"] == 0 and not doc["summary"]["identical"]

    # with the data files beside both (a real working tree): the full diff, as wdiff does
    full = sh(CLI + ["git-diff-driver", "m.ckpt.index", str(tmp_path / "old" / "m.ckpt.index"),
                     "0" * 40, "100644", str(tmp_path / "new" / "m.ckpt.index"), "1" * 40,
                     "100644"], tmp_path, env).stdout
    assert "(tf-checkpoint)" in full and "elements differ" in full
    # the same comparison on the command line, asked for
    for other, status in (("new", 1), ("old", 0)):
        cli = sh(CLI + ["diff", "--index-only", str(tmp_path / "old" / "m.ckpt.index"),
                        str(tmp_path / other / "m.ckpt.index")], tmp_path, env, ok=False)
        assert cli.returncode == status and "compared by the checksums" in cli.stdout
    # a checkpoint named as every other command takes it: its prefix, its directory
    cli = sh(CLI + ["diff", "--index-only", str(tmp_path / "old" / "m.ckpt"),
                    str(tmp_path / "new")], tmp_path, env, ok=False)
    assert cli.returncode == 1 and "compared by the checksums" in cli.stdout, cli.stderr

    added, removed = added_then_deleted(
        path, env, "m.ckpt.index",
        lambda target: shutil.copy(tmp_path / "old" / "m.ckpt.index", target))
    assert "--- /dev/null" in added and "different: 6 added; compared by the checksums" in added
    assert "+++ /dev/null" in removed and "different: 6 removed; compared by the checksums" in removed


def test_index_textconv_and_bad_index(tmp_path, fixtures_dir):
    """textconv of an `.index` alone lists name, shape, dtype and checksum (the same with or
    without the data beside it); a damaged one is one line, and git goes on."""
    env = environment(tmp_path)
    checkpoint_files(fixtures_dir, "mlp--tfkeras-legacyopt.ckpt", tmp_path)
    with_data = sh(CLI + ["git-diff-driver", "--textconv", "m.ckpt.index"], tmp_path, env).stdout
    (tmp_path / "alone").mkdir()
    shutil.copy(tmp_path / "m.ckpt.index", tmp_path / "alone" / "m.ckpt.index")
    alone = sh(CLI + ["git-diff-driver", "--textconv", "alone/m.ckpt.index"], tmp_path, env).stdout
    assert alone == with_data
    lines = alone.splitlines()
    assert lines[0] == "# weightkit: tf-checkpoint-index, 17 variables (checksums of the data " \
                       "files, which are not read)"
    assert lines[1].startswith("layer_with_weights-0/bias (16) float32 crc32c:")
    assert any(line.startswith("layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m "
                               "[optimizer] (8, 16) float32 crc32c:") for line in lines)
    assert lines[-1].startswith("# object graph crc32c:")

    index = (tmp_path / "m.ckpt.index").read_bytes()
    (tmp_path / "alone" / "bad.index").write_bytes(index[:20] + bytes([index[20] ^ 1]) + index[21:])
    conv = sh(CLI + ["git-diff-driver", "--textconv", "alone/bad.index"], tmp_path, env)
    assert conv.stdout.count("\n") == 1 and "checksum does not match" in conv.stdout
    assert "Traceback" not in conv.stderr
    args = ["m.ckpt.index", "alone/m.ckpt.index", "0" * 40, "100644", "alone/bad.index",
            "1" * 40, "100644"]
    driver = sh(CLI + ["git-diff-driver", *args], tmp_path, env)
    assert "weightkit: cannot compare:" in driver.stdout and "Traceback" not in driver.stderr


def test_disable_empties_a_tracked_attributes_file_instead_of_deleting_it(repo):
    """A `.gitattributes` holding only our lines but committed is the user's file: --disable
    leaves it, empty, instead of deleting a tracked file."""
    path, env = repo
    sh(CLI + ["git-config"], path, env)
    sh(["git", "add", ".gitattributes"], path, env)
    sh(["git", "commit", "-q", "-m", "attributes"], path, env)
    sh(CLI + ["git-config", "--disable"], path, env)
    assert (path / ".gitattributes").exists() and (path / ".gitattributes").read_text() == ""
