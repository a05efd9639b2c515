"""The run folder's one owner: its layout, atomic writes, the split, the store it used.

A *run folder* holds everything ``kgrec train`` produced, one stage after the other::

    run_dir/
      run.json              the run's configuration (one section per stage) and the store it
                            was trained on (kind + path or URI; never a password)
      graph/                the exported graph and its id maps        (gnn stage, kg.export)
      split.npz             train / valid / test index pairs           (gnn)
      checkpoints/          resumable training checkpoints             (gnn)
      model.pt              the graph encoder's best state_dict        (gnn)
      embeddings.npz        user / item embeddings and their ids       (gnn)
      metrics.json, report.md   test metrics of the GNN and popularity (gnn)
      catalogue/            items.parquet, judgements.parquet read from the store (text)
      text/                 encoder/ (fine-tuned HF directory) or encoder.json (checkpoint
                            used as is), items/, users/, queries/ embeddings, summary.json
      fusion/               model/ (the fusion model: its config + weights), tables.pt
                            (feature tables), checkpoint.pt, history.json, examples.json
      comparison.json, comparison.md   the popularity / GNN / text / fused table (fusion)

Every other module asks :class:`RunDir` for a path instead of spelling it, and writes
files through the atomic helpers below (a temporary file or folder, then a rename), so
a crash never leaves a half-written file under its final name. :meth:`RunDir.need`
turns a missing stage output into one clear :class:`~kg.errors.RunFolderError`
naming the stage to run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from kg.errors import RunFolderError
from kg.split import Split

STAGES = ("gnn", "text", "fusion")


# ------------------------------------------------------------------ atomic writes

def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it to ``path``.

    The temporary name carries the process id, so concurrent writers (torchrun ranks)
    never share one; readers see the old file or the new one, never a part of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)``, atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez(path, **arrays)``, atomically (``path`` is used as given)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save(path, array)``, atomically (``path`` is used as given)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def save_parquet(frame, path: str | os.PathLike) -> Path:
    """``frame.to_parquet(path)`` (a pandas DataFrame), atomically."""
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp))


def replace_directory(source: Path, target: Path) -> None:
    """Move the finished directory ``source`` to ``target``, replacing any old one.

    ``rename`` cannot replace a non-empty directory, so an existing ``target`` is first
    renamed aside and deleted after the new one is in place.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_directory(d) as tmp: <write files into tmp>`` -- on success ``tmp``
    replaces ``d`` (see :func:`replace_directory`); on error it is removed and ``d`` is
    left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700); a run folder is not
    try:
        yield tmp
        replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------ the folder

class RunDir:
    """The paths of one run folder (see the module docstring) and its bookkeeping.

    Cheap to make (no I/O): ``RunDir("runs/demo").embeddings`` is just a path.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # run-level
    config_file = property(lambda self: self.path / "run.json")
    # gnn stage
    graph = property(lambda self: self.path / "graph")
    split_file = property(lambda self: self.path / "split.npz")
    checkpoints = property(lambda self: self.path / "checkpoints")
    gnn_model = property(lambda self: self.path / "model.pt")
    embeddings = property(lambda self: self.path / "embeddings.npz")
    metrics = property(lambda self: self.path / "metrics.json")
    report = property(lambda self: self.path / "report.md")
    # text stage
    catalogue_items = property(lambda self: self.path / "catalogue" / "items.parquet")
    judgements = property(lambda self: self.path / "catalogue" / "judgements.parquet")
    text = property(lambda self: self.path / "text")
    text_encoder = property(lambda self: self.path / "text" / "encoder")
    text_encoder_record = property(lambda self: self.path / "text" / "encoder.json")
    text_items = property(lambda self: self.path / "text" / "items")
    text_users = property(lambda self: self.path / "text" / "users")
    text_queries = property(lambda self: self.path / "text" / "queries")
    text_summary = property(lambda self: self.path / "text" / "summary.json")
    # fusion stage
    fusion = property(lambda self: self.path / "fusion")
    fusion_model = property(lambda self: self.path / "fusion" / "model")
    fusion_tables = property(lambda self: self.path / "fusion" / "tables.pt")
    fusion_checkpoint = property(lambda self: self.path / "fusion" / "checkpoint.pt")
    fusion_history = property(lambda self: self.path / "fusion" / "history.json")
    fusion_examples = property(lambda self: self.path / "fusion" / "examples.json")
    comparison_json = property(lambda self: self.path / "comparison.json")
    comparison_md = property(lambda self: self.path / "comparison.md")

    def need(self, path: Path, stage: str) -> Path:
        """``path`` if it exists, else a :class:`RunFolderError` naming the stage that makes it."""
        if not Path(path).exists():
            raise RunFolderError(f"{path} is missing: run the {stage} stage first "
                                 f"(kgrec train --stage {stage} --run {self.path})")
        return Path(path)

    # ------------------------------------------------------------ run.json
    def config(self) -> dict[str, Any]:
        """The run's configuration (``run.json``), ``{}`` for a new folder."""
        if not self.config_file.exists():
            return {}
        return json.loads(self.config_file.read_text())

    def update_config(self, **sections: Any) -> None:
        """Set top-level sections of ``run.json`` (e.g. ``gnn=…``, ``store=…``), keeping the others."""
        values = {**self.config(), **sections}
        write_json(self.config_file, values)

    def store_location(self) -> dict[str, str] | None:
        """Where the graph this run was trained on lives (``GraphStore.location()``), if recorded."""
        return self.config().get("store")

    # ------------------------------------------------------------ split
    def save_split(self, split: Split) -> None:
        save_npz(self.split_file, sizes=np.array([split.num_users, split.num_items]),
                 train_u=split.train[0], train_i=split.train[1], valid_u=split.valid[0],
                 valid_i=split.valid[1], test_u=split.test[0], test_i=split.test[1])

    def load_split(self) -> Split:
        z = np.load(self.need(self.split_file, "gnn"), allow_pickle=False)
        return Split(int(z["sizes"][0]), int(z["sizes"][1]), (z["train_u"], z["train_i"]),
                     (z["valid_u"], z["valid_i"]), (z["test_u"], z["test_i"]))
