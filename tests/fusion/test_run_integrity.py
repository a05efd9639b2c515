"""A damaged run folder is one clear error naming the file -- never a different answer.

Every file of a (tiny, untrained) run folder is in turn truncated, emptied, garbled at a
random offset, and deleted; then the run is opened and asked for recommendations,
search results, similar products and an explanation. Each corruption must end in a
:class:`kg.errors.KgrecError` whose message names the damaged file; none may answer.
"""

from __future__ import annotations

import random
import shutil

import pytest

from fusion.cli import main
from fusion.engine import Engine
from fusion.tiny_run import make_tiny_run
from kg.errors import IntegrityError, KgrecError
from kg.run_dir import MANIFEST, RunDir

CORRUPTIONS = ("truncated", "emptied", "garbled", "deleted")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    run, _ = make_tiny_run(tmp_path_factory.mktemp("integrity"))
    return run


def answers(run_dir) -> tuple:
    with Engine.open(run_dir) as engine:
        users = list(engine.user_index[:3])
        return (tuple(tuple(r.item_id for r in engine.recommend(u, k=5)) for u in users),
                tuple(r.item_id for r in engine.search("a gift", k=5)),
                tuple(r.item_id for r in engine.similar(engine.catalogue.ids[0], k=5)),
                engine.explain(users[0], engine.catalogue.ids[1]).sentence)


def corrupt(path, how: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "garbled":
        at = rng.randrange(max(len(data) - 64, 1))
        junk = bytes(rng.randrange(256) for _ in range(64))
        path.write_bytes(data[:at] + junk + data[at + 64:])
    else:
        path.unlink()


def test_every_corruption_of_every_file_is_named(tiny, tmp_path):
    expected = answers(tiny.path)
    files = tiny.files() + [MANIFEST]
    assert len(files) >= 12, files
    rng = random.Random(0)
    detected, total, missed = 0, 0, []
    for n, rel in enumerate(files):
        for how in CORRUPTIONS:
            copy = tmp_path / f"run{n}-{how}"
            shutil.copytree(tiny.path, copy)
            corrupt(copy / rel, how, rng)
            total += 1
            try:
                got = answers(copy)
            except KgrecError as exc:
                assert rel in str(exc).replace(str(copy) + "/", ""), (rel, how, str(exc))
                detected += 1
            else:
                missed.append((rel, how, "same answers" if got == expected else "DIFFERENT answers"))
            shutil.rmtree(copy)
    print(f"run-folder corruptions detected: {detected}/{total}")
    assert not missed and detected == total


def test_verify_command_checks_a_run_without_serving_it(tiny, tmp_path, capsys):
    assert main(["verify", "--run", str(tiny.path)]) == 0
    assert "ok" in capsys.readouterr().out
    copy = tmp_path / "run"
    shutil.copytree(tiny.path, copy)
    corrupt(copy / "fusion" / "tables.pt", "garbled", random.Random(1))
    assert main(["verify", "--run", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "fusion/tables.pt" in err and "retrain the fusion stage" in err
    with pytest.raises(IntegrityError) as info:
        RunDir(copy).verify()
    assert info.value.stage == "fusion"


def test_a_new_configuration_is_vouched_for_but_other_damage_is_still_caught(tiny, tmp_path):
    """Retraining one stage with new settings rewrites ``run.json``; the manifest follows
    that write (the next stage's check passes) and still catches any other changed file."""
    copy = tmp_path / "run"
    shutil.copytree(tiny.path, copy)
    run = RunDir(copy)
    run.update_config(fusion={**run.config().get("fusion", {}), "epochs": 2})
    assert run.verify() == len(run.files())
    corrupt(copy / "fusion" / "tables.pt", "garbled", random.Random(2))
    run.update_config(fusion={**run.config().get("fusion", {}), "epochs": 3})
    with pytest.raises(IntegrityError) as info:
        run.verify()
    assert "fusion/tables.pt" in str(info.value)


@pytest.mark.parametrize("stage", ["text", "fusion", "value"])
def test_a_later_stage_on_a_folder_never_trained_says_to_run_the_gnn_stage_first(tiny, tmp_path, stage, capsys):
    """Not "written by an older kgrec or its training did not finish": it was never trained."""
    fresh = tmp_path / "fresh"
    store = tiny.path.parent / "graph"
    assert main(["train", "--stage", stage, "--run", str(fresh), "--db", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{fresh / 'graph'} is missing: run the gnn stage first" in err, err
    assert "older kgrec" not in err


def test_a_retrain_whose_value_stage_is_skipped_removes_the_stale_value_tables(tmp_path, monkeypatch):
    """B3: a retrain of the earlier stages whose value stage is then skipped (data it does
    not fit) removes the previous training's value tables and their manifest entries --
    they describe the data the retrain replaced -- so reading them says the stage was
    skipped and ``verify`` vouches only for what is there; a value stage that fails on its
    own keeps the tables that still match the trained run."""
    import fusion.pipeline
    from fusion.pipeline import RunConfig, train_all
    from fusion.value.config import ValueConfig
    from fusion.value.results import ValueTables
    from fusion.value.train import run_value_stage
    from kg.errors import ConfigError, RunFolderError
    from kg.stores import StoreConfig, open_store

    run, _ = make_tiny_run(tmp_path)
    run_value_stage(run.path, ValueConfig(epochs=5, patience=5, threads=1))
    served = ValueTables.load(run).users
    skipping = RunConfig(value=ValueConfig(horizon_days=100_000, threads=1))  # longer than the data's time span
    with open_store(StoreConfig(kind="embedded", path=str(tmp_path / "graph"))) as store:
        with pytest.raises(ConfigError, match="longer than the data's time span"):
            train_all(store, run.path, skipping, stages=("value",))
        assert ValueTables.load(run).users.equals(served)  # still the trained run's: kept
        run.verify()
        monkeypatch.setattr(fusion.pipeline, "run_fusion_stage", lambda *a, **k: {})  # an earlier stage retrained
        out = train_all(store, run.path, skipping, stages=("fusion", "value"))
    assert "longer than the data's time span" in out["value"]["skipped"]
    assert not run.value.exists() and not any(rel.startswith("value/") for rel in run.manifest())
    run.verify()
    with pytest.raises(RunFolderError, match="value stage was skipped .*longer than the data's time span"):
        ValueTables.load(run)
