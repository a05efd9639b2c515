"""Run versions (``kgrec update``'s output) as serving and ``kgrec verify`` see them.

``kgrec verify`` checks the trained run and every version folder, each against its own
manifest, and says which is served; a ``CURRENT`` that names no version folder is an error
for serving and for verify, never the trained run served silently in its place; a damaged
version is met with advice that works (a version is not retrained: it is dropped, and
``kgrec update`` makes a new one); and a ``kgrec update`` with nothing to do leaves the
store's bytes as they were. A retrain of a stage versions are folded from drops them (the
retrained run is served, and the next update folds in from it), a version folded from
another trained run is never served, and what a killed version write leaves behind is
swept by the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusion.cli import main
from fusion.engine import Engine
from fusion.tiny_run import make_tiny_run
from kg.build import BuildConfig
from kg.errors import IntegrityError
from kg.ingest import ingest
from kg.run_dir import VERSIONS_LOCK, RunDir, RunVersion, save_npz, write_json
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


# ------------------------------------------------------------------ retraining a run with versions

def tiny_training(encoder: Path):
    """A :class:`~fusion.pipeline.RunConfig` that trains each stage of the tiny run in about a
    second (the text stage uses the checkpoint ``encoder`` as is)."""
    from fusion.pipeline import RunConfig, TextStageConfig
    from fusion.ranking.config import FusionConfig
    from fusion.text.finetune import TextTrainConfig
    from kg.pipeline import GnnRunConfig
    from kg.train import TrainConfig

    return RunConfig(
        gnn=GnnRunConfig(train=TrainConfig(model="bpr_mf", embedding_dim=8, epochs=1, threads=1, device="cpu")),
        text=TextStageConfig(finetune=False, train=TextTrainConfig(checkpoint=str(encoder), max_length=32, threads=1)),
        fusion=FusionConfig(epochs=1, members=1, hidden=16, text_proj=8, tower=8, min_steps_per_epoch=1, threads=1,
                            device="cpu", candidates=20),
        baselines=False)


@pytest.fixture(scope="module")
def with_text(base, tmp_path_factory):
    """The tiny run with its text stage trained (the fusion stage reads it), and a
    configuration that trains each stage of it in about a second."""
    from fusion.pipeline import train_all

    root = tmp_path_factory.mktemp("with_text")
    run = RunDir(shutil.copytree(base[0].path, root / "run"))
    config = tiny_training(shutil.copytree(run.text_encoder, root / "encoder"))
    with open_store(StoreConfig(kind="embedded", path=str(base[2])), read_only=True) as graph:
        train_all(graph, run.path, config, stages=("text",))
    return run, config


@pytest.mark.parametrize("stage", ["gnn", "text", "fusion"])
def test_retraining_a_stage_drops_the_versions_and_the_next_update_folds_in_from_it(base, with_text, tmp_path,
                                                                                    stage, capsys):
    from fusion.pipeline import train_all
    from fusion.update import update_run

    run = RunDir(shutil.copytree(with_text[0].path, tmp_path / "run"))
    store = tmp_path / "graph"
    (shutil.copytree if base[2].is_dir() else shutil.copy2)(base[2], store)
    with run.new_version({"store_version": run.config()["store_version"]}) as version:  # the old model's fold-in
        emb = np.load(run.embeddings)
        save_npz(version.embeddings, **{k: emb[k] + 1 if k in ("user", "item") else emb[k] for k in emb.files})
    assert run.current_version() == "v000001"
    with open_store(StoreConfig(kind="embedded", path=str(store)), read_only=True) as graph:
        train_all(graph, run.path, with_text[1], stages=(stage,))
    assert not (run.path / "CURRENT").exists() and run.version_names() == [] and run.serving() is run
    with Engine.open(run.path) as engine:
        assert engine.version is None  # the retrained run, not the old model's fold-in
    assert main(["verify", "--run", str(run.path)]) == 0
    assert "serving the trained run" in capsys.readouterr().out
    item = base[1].items["item_id"].iloc[0]
    with open_store(StoreConfig(kind="embedded", path=str(store))) as graph:
        ingest(graph, Dataset(name="delta", interactions=make_table("interactions", [
            {"user_id": "after-retrain", "item_id": item, "event": "purchase", "timestamp": 1_700_000_000}])),
            BuildConfig(progress=False))
        report = update_run(graph, run.path)
    # a new name: a serving process still on the dropped v000001 must not take this one for it
    assert report.version == "v000002" and run.serving().record()["parent"] is None
    trained, folded = np.load(run.embeddings), np.load(run.versions / "v000002" / "embeddings.npz")
    row = list(folded["item_ids"]).index(str(trained["item_ids"][0]))
    assert np.allclose(folded["item"][row], trained["item"][0])  # folded from the retrained vectors
    with Engine.open(run.path) as engine:
        assert engine.version == "v000002" and engine.knows_user("after-retrain")


def test_a_version_folded_from_another_trained_run_is_not_served(versioned, capsys):
    """A retrain that did not drop the versions (killed before, or an update racing it)."""
    assert versioned.current_version() == "v000002"
    write_json(versioned.value_summary, {"as_of": 0})  # the value stage: versions are not folded from it
    versioned.write_manifest()
    assert versioned.current_version() == "v000002" and isinstance(versioned.serving(), RunVersion)
    emb = np.load(versioned.embeddings)
    save_npz(versioned.embeddings, **{k: emb[k] * 2 if k in ("user", "item") else emb[k] for k in emb.files})
    versioned.write_manifest()  # the gnn stage retrained
    assert versioned.current_version() is None and versioned.serving() is versioned
    with Engine.open(versioned.path) as engine:
        assert engine.version is None
    assert main(["verify", "--run", str(versioned.path)]) == 0
    assert "serving the trained run" in capsys.readouterr().out
    with versioned.new_version({"store_version": versioned.config()["store_version"]}):
        pass
    assert versioned.current_version() == "v000003" and versioned.serving().record()["parent"] is None
    # a version written by an older kgrec (no record of its trained run) cannot be told apart: served
    record = versioned.versions / "v000001" / "version.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "trained_run"}))
    (versioned.path / "CURRENT").write_text("v000001\n")
    assert versioned.current_version() == "v000001"


KILLED_WRITE = """
import os, signal, sys
from kg.run_dir import RunDir
with RunDir(sys.argv[1]).new_version({}) as version:
    (version.path / "embeddings.npz").write_bytes(b"half a version")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_version_write_is_swept_by_the_next(versioned):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(versioned.path)], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr
    left = [d for d in versioned.versions.iterdir() if d.name.startswith(".v000003.tmp")]
    assert len(left) == 1 and versioned.current_version() == "v000002"
    assert versioned.unfinished_versions() == left
    with open(versioned.path / VERSIONS_LOCK, "a") as lock:  # a version being written: its folder is not stale
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        assert versioned.unfinished_versions() == []
        fcntl.flock(lock, fcntl.LOCK_UN)
    with versioned.new_version({"store_version": versioned.config()["store_version"]}):
        pass
    assert not left[0].exists() and versioned.unfinished_versions() == []
    assert versioned.current_version() == "v000003"
