"""Run versions (``kgrec update``'s output) as serving and ``kgrec verify`` see them.

``kgrec verify`` checks the trained run and every version folder, each against its own
manifest, and says which is served; a ``CURRENT`` that names no version folder is an error
for serving and for verify, never the trained run served silently in its place; a damaged
version is met with advice that works (a version is not retrained: it is dropped, and
``kgrec update`` makes a new one); and a ``kgrec update`` with nothing to do leaves the
store's bytes as they were.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusion.cli import main
from fusion.engine import Engine
from fusion.tiny_run import make_tiny_run
from kg.build import BuildConfig
from kg.errors import IntegrityError
from kg.ingest import ingest
from kg.run_dir import RunDir, RunVersion, save_npz
from kg.stores import StoreConfig, open_store
from loaders.dataset import Dataset, make_table


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny trained run (no versions) and the embedded store it was made from."""
    root = tmp_path_factory.mktemp("versions")
    run, dataset = make_tiny_run(root)
    return run, dataset, root / "graph"


@pytest.fixture
def versioned(base, tmp_path) -> RunDir:
    """A copy of the tiny run with two versions, v000002 served (each its own copy of the
    embeddings; the rest read from the trained run, as a version does)."""
    run = RunDir(shutil.copytree(base[0].path, tmp_path / "run"))
    for n in range(2):
        with run.new_version({"store_version": run.config()["store_version"]}) as version:
            emb = np.load(run.embeddings)
            save_npz(version.embeddings, **{k: emb[k] + n if k in ("user", "item") else emb[k] for k in emb.files})
    assert run.current_version() == "v000002" and sorted(p.name for p in run.versions.iterdir()) == ["v000001",
                                                                                                     "v000002"]
    return run


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def digest(path: Path) -> str:
    """SHA-256 over a store's bytes (a file, or every file of a folder)."""
    h = hashlib.sha256()
    for p in sorted([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


# ------------------------------------------------------------------ verify

def test_verify_checks_every_version_and_says_which_is_served(versioned, capsys):
    assert main(["verify", "--run", str(versioned.path)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "v000001" in out and "serving version v000002" in out
    assert versioned.verify_versions() == {"v000002": 2, "v000001": 2}  # each: embeddings.npz, version.json


def test_verify_fails_on_a_damaged_served_version_with_advice_that_works(versioned, capsys):
    truncate(versioned.versions / "v000002" / "embeddings.npz")
    assert versioned.verify() > 0  # the trained run alone is fine: verify must look at the versions too
    assert main(["verify", "--run", str(versioned.path)]) == 2
    err = capsys.readouterr().err
    assert "versions/v000002/embeddings.npz" in err and "the version served" in err
    assert f"rm -r {versioned.versions / 'v000002'}" in err and f"echo v000001 > {versioned.path / 'CURRENT'}" in err
    assert "kgrec train" not in err  # no stage writes a version: retraining one is a dead end
    with pytest.raises(IntegrityError) as info:  # serving says the same
        Engine.open(versioned.path)
    assert "versions/v000002/embeddings.npz" in str(info.value) and "kgrec train" not in str(info.value)
    # following the advice: the version before it is served, and checks out
    shutil.rmtree(versioned.versions / "v000002")
    (versioned.path / "CURRENT").write_text("v000001\n")
    assert main(["verify", "--run", str(versioned.path)]) == 0
    assert "serving version v000001" in capsys.readouterr().out


def test_verify_fails_on_a_damaged_version_that_is_not_served(versioned, capsys):
    truncate(versioned.versions / "v000001" / "embeddings.npz")
    assert main(["verify", "--run", str(versioned.path)]) == 2
    err = capsys.readouterr().err
    assert "versions/v000001/embeddings.npz" in err and "not the version served" in err and "kgrec train" not in err


def test_a_damaged_version_file_read_by_serving_names_the_version_not_a_stage(versioned):
    serving = versioned.serving()
    assert isinstance(serving, RunVersion)
    with pytest.raises(IntegrityError) as info:
        with serving.reading(serving.embeddings, "gnn"):
            raise ValueError("bad zip")
    assert "v000002/embeddings.npz" in str(info.value) and "kgrec train" not in str(info.value)
    with pytest.raises(IntegrityError) as info:  # a file of the trained run: retrain its stage, as before
        with serving.reading(serving.fusion_tables, "fusion"):
            raise ValueError("bad pickle")
    assert "retrain the fusion stage" in str(info.value)
    (versioned.versions / "v000002" / "manifest.json").unlink()
    with pytest.raises(IntegrityError) as info:
        versioned.verify_versions()
    assert "v000002/manifest.json is missing" in str(info.value) and "kgrec train" not in str(info.value)


# ------------------------------------------------------------------ CURRENT naming no version

def test_current_naming_a_missing_version_is_an_error_not_the_trained_run(versioned, capsys):
    current = versioned.path / "CURRENT"
    current.write_text("v000009\n")
    for attempt in (versioned.serving, versioned.current_version, lambda: Engine.open(versioned.path)):
        with pytest.raises(IntegrityError) as info:
            attempt()
        message = str(info.value)
        assert str(current) in message and "v000009" in message and "v000001, v000002" in message
        assert f"echo v000002 > {current}" in message and "delete it to serve the trained run" in message
    assert main(["verify", "--run", str(versioned.path)]) == 2
    assert "names v000009" in capsys.readouterr().err
    for text in ("", "../..\n"):  # empty, or not a version's name at all
        current.write_text(text)
        with pytest.raises(IntegrityError, match="CURRENT"):
            versioned.serving()


def test_current_left_behind_by_a_deleted_versions_folder_is_an_error(versioned, capsys):
    shutil.rmtree(versioned.versions)
    with pytest.raises(IntegrityError, match="no version is there") as info:
        versioned.serving()
    assert f"rm {versioned.path / 'CURRENT'}" in str(info.value)
    assert main(["verify", "--run", str(versioned.path)]) == 2
    assert "CURRENT names v000002" in capsys.readouterr().err
    # following the advice: the trained run is served again
    (versioned.path / "CURRENT").unlink()
    assert versioned.serving() is versioned
    assert main(["verify", "--run", str(versioned.path)]) == 0
    assert "serving the trained run" in capsys.readouterr().out


def test_a_run_never_updated_serves_its_trained_files(base, capsys):
    run = base[0]
    assert run.current_version() is None and run.serving() is run and run.verify_versions() == {}
    assert main(["verify", "--run", str(run.path)]) == 0
    assert "serving the trained run" in capsys.readouterr().out


# ------------------------------------------------------------------ kgrec update

def test_update_leaves_an_up_to_date_store_untouched_and_a_damaged_version_can_be_replaced(base, tmp_path, capsys):
    run = RunDir(shutil.copytree(base[0].path, tmp_path / "run"))
    store = tmp_path / "graph"
    (shutil.copytree if base[2].is_dir() else shutil.copy2)(base[2], store)
    update = ["update", "--run", str(run.path), "--db", str(store)]
    before = digest(store)
    for _ in range(2):  # nothing new: "up to date", and the store's bytes as they were
        assert main(update) == 0
        assert "up to date" in capsys.readouterr().out
        assert digest(store) == before
    item = base[1].items["item_id"].iloc[0]
    with open_store(StoreConfig(kind="embedded", path=str(store))) as graph:
        ingest(graph, Dataset(name="delta", interactions=make_table("interactions", [
            {"user_id": "newbie", "item_id": item, "event": "purchase", "timestamp": 1_700_000_000}])),
            BuildConfig(progress=False))
    assert main(update) == 0  # something new: a version
    assert "version v000001" in capsys.readouterr().out and run.current_version() == "v000001"
    changed = digest(store)
    assert main(update) == 0 and "up to date" in capsys.readouterr().out and digest(store) == changed
    # a damaged served version: update refuses it, and its advice -- drop the version, serve
    # the trained run, update again -- makes a new, sound version
    truncate(run.versions / "v000001" / "embeddings.npz")
    assert main(update) == 2
    assert "rm -r" in capsys.readouterr().err
    shutil.rmtree(run.versions / "v000001")
    (run.path / "CURRENT").unlink()
    assert main(update) == 0 and "version v000001" in capsys.readouterr().out
    assert main(["verify", "--run", str(run.path)]) == 0 and "serving version v000001" in capsys.readouterr().out
    with Engine.open(run.path) as engine:
        assert engine.knows_user("newbie")
