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
