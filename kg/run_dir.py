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
                            (feature tables), exposure.pt (sources with impressions),
                            checkpoint.pt, history.json, examples.json
      comparison.json, comparison.md   the popularity / GNN / text / fused table (fusion)
      value/                users / items / loyalty / brands .parquet (predictions over the
                            horizon after the last event), models/, summary.json, report.md (value)
      manifest.json         size and SHA-256 of every other file, written last by each stage

Every other module asks :class:`RunDir` for a path instead of spelling it, and writes
files through the atomic helpers below (a temporary file or folder, then a rename), so
a crash never leaves a half-written file under its final name. :meth:`RunDir.need`
turns a missing stage output into one clear :class:`~kg.errors.RunFolderError`
naming the stage to run.

**Integrity.** Each stage ends by rewriting ``manifest.json`` (:meth:`RunDir.write_manifest`:
the size and SHA-256 of every file, written atomically, last). Whatever reads a run first
checks it (:meth:`RunDir.verify`): a file that is missing, of another size or another
hash than recorded, or a run without a manifest (older, or its training never finished)
is one :class:`~kg.errors.IntegrityError` naming the file and the stage to retrain --
never a silently different answer, never a traceback from deep inside a loader.

**Versions.** ``kgrec update`` writes ``versions/v…`` folders, each with its own manifest,
and ``CURRENT`` naming the one served (:meth:`RunDir.new_version`, :meth:`RunDir.serving`).
A damaged version is not retrained (no stage writes one): its error says to drop it and
serve the version before it, or the trained run, then update again. A ``CURRENT`` naming
no version folder here is an error too, never the trained run served in its place;
:meth:`RunDir.verify_versions` checks ``CURRENT`` and every version (``kgrec verify``).
A version is folded in from one trained run: retraining a stage it is folded from
(:data:`FOLDED_FROM`) drops every version (:meth:`RunDir.drop_versions`), and a version
records the trained run it came from (:meth:`RunDir.trained_fingerprint`), so one that
does not match the trained files -- a retrain killed before it dropped them, an update
racing a retrain -- is never served: the trained run is (:meth:`RunDir.current_version`).
Versions are written one at a time under a file lock (``.versions.lock``), so the next
write sweeps what a killed one left behind (:meth:`RunDir.unfinished_versions`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from kg.errors import IntegrityError, RunFolderError
from kg.split import Split

STAGES = ("gnn", "text", "fusion", "value")
MANIFEST = "manifest.json"
RAN_WITH = "ran_with"  #: run.json: per stage, the threads and device it ran with (RunDir.record_ran_with)
#: first path parts that live operation writes beside a trained run (not any stage's files)
LIVE_PARTS = ("versions", "CURRENT", "inbox")
CURRENT = "CURRENT"  #: the file naming the version served (RunDir.current_version)
_VERSION_NAME = re.compile(r"v[0-9]+")  #: a run version's folder name (RunDir.new_version)
#: a version's temporary folder while it is written (atomic_directory), or the old one being replaced
_VERSION_WRITE = re.compile(r"\.v[0-9]+\.(tmp|old).*")
VERSIONS_LOCK = ".versions.lock"  #: held while a version is written or the versions dropped (hidden: no stage's)
#: the stages whose files a run version is folded from: retraining one of them drops the versions (the
#: value stage does not: its tables are recomputed by each update, and the newer ones are served)
FOLDED_FROM = ("gnn", "text", "fusion")
#: versions/: the last version's name, left by RunDir.drop_versions so a name is never given twice (a
#: serving process still on the dropped v000001 would take a new v000001 for the one it has)
_LAST_DROPPED = ".last_dropped"
TRAINED_RUN = "trained_run"  #: version.json: the trained run it was folded from (RunDir.trained_fingerprint)
#: what the fusion stage reads of the stages before it (paths or folders of the run): its tables hold
#: copies of these, so a retrain of one of them leaves the fusion stage out of step (RunDir.check_built_on)
FUSION_INPUTS = ("graph", "split.npz", "embeddings.npz", "catalogue", "text/items", "text/users", "text/queries")
BUILT_ON = "built_on"  #: run.json: per stage, the fingerprint of its inputs when it was trained
#: first path part -> the stage that writes it (anything else: the gnn stage)
_STAGE_OF = {"catalogue": "text", "text": "text", "fusion": "fusion", "comparison.json": "fusion",
             "comparison.md": "fusion", "run.json": "all", "value": "value"}


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

    def at(self, relpath: str) -> Path:
        """The path of ``relpath`` in this run (a :class:`RunVersion` may hold its own copy)."""
        return self.path / relpath

    # run-level
    config_file = property(lambda self: self.at("run.json"))
    # gnn stage
    graph = property(lambda self: self.at("graph"))
    split_file = property(lambda self: self.at("split.npz"))
    checkpoints = property(lambda self: self.at("checkpoints"))
    gnn_model = property(lambda self: self.at("model.pt"))
    embeddings = property(lambda self: self.at("embeddings.npz"))
    metrics = property(lambda self: self.at("metrics.json"))
    report = property(lambda self: self.at("report.md"))
    # text stage
    catalogue_items = property(lambda self: self.at("catalogue/items.parquet"))
    judgements = property(lambda self: self.at("catalogue/judgements.parquet"))
    text = property(lambda self: self.at("text"))
    text_encoder = property(lambda self: self.at("text/encoder"))
    text_encoder_record = property(lambda self: self.at("text/encoder.json"))
    text_items = property(lambda self: self.at("text/items"))
    text_users = property(lambda self: self.at("text/users"))
    text_queries = property(lambda self: self.at("text/queries"))
    text_summary = property(lambda self: self.at("text/summary.json"))
    # fusion stage
    fusion = property(lambda self: self.at("fusion"))
    fusion_model = property(lambda self: self.at("fusion/model"))
    fusion_tables = property(lambda self: self.at("fusion/tables.pt"))
    fusion_exposure = property(lambda self: self.at("fusion/exposure.pt"))
    fusion_checkpoint = property(lambda self: self.at("fusion/checkpoint.pt"))
    fusion_history = property(lambda self: self.at("fusion/history.json"))
    fusion_examples = property(lambda self: self.at("fusion/examples.json"))
    comparison_json = property(lambda self: self.at("comparison.json"))
    comparison_md = property(lambda self: self.at("comparison.md"))
    # value stage
    value = property(lambda self: self.at("value"))
    value_users = property(lambda self: self.at("value/users.parquet"))
    value_items = property(lambda self: self.at("value/items.parquet"))
    value_loyalty = property(lambda self: self.at("value/loyalty.parquet"))
    value_brands = property(lambda self: self.at("value/brands.parquet"))
    value_models = property(lambda self: self.at("value/models"))
    value_summary = property(lambda self: self.at("value/summary.json"))
    value_report = property(lambda self: self.at("value/report.md"))

    # ------------------------------------------------------------ versions
    @property
    def versions(self) -> Path:
        return self.path / "versions"

    def current_version(self) -> str | None:
        """The name of the version serving reads (``CURRENT``), ``None`` for the trained run
        itself (no ``CURRENT``: a run never updated). A ``CURRENT`` that names no version
        folder here -- that folder or all of ``versions/`` deleted, an empty or garbled file --
        is an :class:`IntegrityError` naming it and what to do, never the trained run served
        silently in the place of the version it names. A version folded from another trained
        run than the one here (:meth:`folded_from_here`: a stage retrained since) is not
        served: ``None``, the trained run is, and the next ``kgrec update`` folds in from it."""
        current = self.path / CURRENT
        name = None
        for _ in range(2):  # read again once: an update may have moved CURRENT on and pruned the old one
            try:
                name = current.read_text().strip()
            except FileNotFoundError:
                return None
            except (OSError, UnicodeDecodeError) as exc:
                raise IntegrityError(f"{current} cannot be read ({type(exc).__name__}); "
                                     f"{self._current_advice()}", str(current), "update") from None
            if _VERSION_NAME.fullmatch(name) and (self.versions / name).is_dir():
                return name if self.folded_from_here(name) else None
        if not name:
            what = f"{current} is empty"
        elif not _VERSION_NAME.fullmatch(name):
            what = f"{current} holds {name[:40]!r}, not the name of a run version"
        else:
            present = self.version_names()
            what = (f"{current} names {name}, which is not in {self.versions} "
                    + (f"(there: {', '.join(present)})" if present else "(no version is there)"))
        raise IntegrityError(f"{what}; {self._current_advice()}", str(current), "update")

    def _current_advice(self) -> str:
        """What to do about a ``CURRENT`` that names no version here (advice that works:
        ``kgrec update`` itself reads ``CURRENT`` first, so it cannot repair one)."""
        present = self.version_names()
        current = self.path / CURRENT
        serve = (f"write the name of a version that is there into it to serve that one "
                 f"(e.g. `echo {present[-1]} > {current}`), or delete it to serve the trained run"
                 if present else f"delete it to serve the trained run (`rm {current}`)")
        return f"{serve}; then `kgrec update --run {self.path}` folds the store's newer events into a new version"

    def version_names(self) -> list[str]:
        """The versions present under ``versions/`` (oldest first), whether served or not."""
        if not self.versions.is_dir():
            return []
        return sorted((d.name for d in self.versions.iterdir() if _VERSION_NAME.fullmatch(d.name) and d.is_dir()),
                      key=lambda n: int(n[1:]))

    def trained_fingerprint(self) -> str | None:
        """SHA-256 over the manifest's entries (path and hash) of the stages a version is
        folded from (:data:`FOLDED_FROM`): it changes exactly when one of them is retrained.
        ``None`` for a run without a manifest (nothing to tell versions apart by)."""
        if not (self.path / MANIFEST).exists():
            return None
        files = self.manifest()
        h = hashlib.sha256()
        for rel in sorted(files):
            if self.stage_of(rel) in FOLDED_FROM:
                h.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
        return h.hexdigest()

    def inputs_fingerprint(self, inputs: tuple[str, ...] = FUSION_INPUTS) -> str | None:
        """SHA-256 over the manifest's entries (path and hash) of ``inputs`` (run-relative
        paths, a folder standing for every file under it); ``None`` without a manifest."""
        if not (self.path / MANIFEST).exists():
            return None
        files = self.manifest()
        h = hashlib.sha256()
        for rel in sorted(files):
            if any(rel == p or rel.startswith(p + "/") for p in inputs):
                h.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
        return h.hexdigest()

    def record_built_on(self, stage: str, fingerprint: str | None) -> None:
        """Note in ``run.json`` the :meth:`inputs_fingerprint` that ``stage`` was trained on."""
        self.update_config(**{BUILT_ON: {**self.config().get(BUILT_ON, {}), stage: fingerprint}})

    def check_built_on(self) -> None:
        """IntegrityError when the fusion stage was trained on other GNN or text files than the
        run holds now -- a ``kgrec train --stage gnn`` (or ``text``) after it: its tables keep
        the vectors it was trained with, while explanations, evaluation and ``kgrec update``
        (which folds users in against the item vectors) read the new ones, so serving such a
        mix would answer from two trainings. A run that records nothing (trained by an older
        kgrec, or without a fusion stage) passes."""
        recorded = self.config().get(BUILT_ON, {}).get("fusion")
        if recorded and self.fusion_model.exists() and recorded != self.inputs_fingerprint(FUSION_INPUTS):
            raise IntegrityError(f"{self.fusion}: the fusion stage was trained on the GNN and text stages as they were "
                                 f"before their last retrain, and serves their old vectors; retrain it: kgrec train "
                                 f"--stage fusion --run {self.path}", str(self.fusion), "fusion")

    def folded_from_here(self, name: str) -> bool:
        """Whether version ``name`` was folded from the trained run now here (its
        ``version.json`` records :meth:`trained_fingerprint`). A version that records none
        (written by an older kgrec) or whose record cannot be read counts as this run's:
        the first cannot be told apart, the second is :meth:`verify_versions`' to report."""
        try:
            recorded = json.loads((self.versions / name / "version.json").read_text()).get(TRAINED_RUN)
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return True
        return recorded is None or recorded == self.trained_fingerprint()

    def serving(self) -> RunDir:
        """The run as serving sees it: the current version over the trained run."""
        name = self.current_version()
        return RunVersion(self.path, self.versions / name) if name else self

    def verify_versions(self) -> dict[str, int]:
        """Check ``CURRENT`` (it names a version that is there, :meth:`current_version`) and
        every version folder present, each against its own manifest -- the served one first;
        returns ``{version: files checked}``. The first bad file is an :class:`IntegrityError`
        naming it and what to do (serve another version, or none)."""
        current = self.current_version()
        names = self.version_names()
        names = ([current] if current else []) + [n for n in names if n != current]
        return {name: RunDir(self.versions / name).verify() for name in names}

    @contextlib.contextmanager
    def versions_lock(self, wait: bool = True) -> Iterator[bool]:
        """Hold the run's versions lock (``.versions.lock``, an ``flock``: released when its
        holder ends, also when killed) -- whoever writes or drops versions holds it, so what
        is half-written under ``versions/`` while one holds it is a dead writer's. Yields
        whether it is held (``wait=False``: ``False`` when another process holds it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / VERSIONS_LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def unfinished_versions(self) -> list[Path]:
        """The temporary folders of version writes that were killed (``versions/.v….tmp…``,
        which nothing ever reads): none while a version is being written (the lock is held,
        they may be its own), also none where the run folder cannot be written."""
        if not self.versions.is_dir():
            return []
        try:
            with self.versions_lock(wait=False) as held:
                return self._version_leftovers() if held else []
        except OSError:
            return []

    def _version_leftovers(self) -> list[Path]:
        """The hidden temporary folders under ``versions/`` (call it holding the versions lock)."""
        return sorted(d for d in self.versions.iterdir() if _VERSION_WRITE.fullmatch(d.name) and d.is_dir())

    def drop_versions(self) -> list[str]:
        """Stop serving every run version and delete them (a retrain of a stage they are
        folded from: they would serve the old model's vectors under the new one). ``CURRENT``
        goes first, in one unlink: readers see the version or the trained run, never a
        ``CURRENT`` naming a deleted folder. Waits for a version being written. The last
        number is remembered: the next version gets a new name. Returns the names dropped."""
        if not (self.path / CURRENT).exists() and not self.versions.is_dir():
            return []
        with self.versions_lock():
            (self.path / CURRENT).unlink(missing_ok=True)
            dropped = self.version_names()
            if not self.versions.is_dir():
                return dropped
            last = f"v{self._last_number():06d}"
            for entry in self.versions.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                elif entry.name != _LAST_DROPPED:
                    entry.unlink()
            write_text(self.versions / _LAST_DROPPED, last + "\n")
        return dropped

    def _last_number(self) -> int:
        """The highest version number given here: of the folders present, or dropped (0: none)."""
        numbers = [int(d.name[1:]) for d in self.versions.glob("v*") if d.name[1:].isdigit()]
        try:
            dropped = (self.versions / _LAST_DROPPED).read_text().strip()
            numbers.append(int(dropped[1:]) if _VERSION_NAME.fullmatch(dropped) else 0)
        except (OSError, UnicodeDecodeError):
            pass
        return max(numbers or [0])

    @contextlib.contextmanager
    def new_version(self, record: dict[str, Any], keep: int = 3) -> Iterator[RunDir]:
        """``with run.new_version({...}) as v: <write the changed serving files into v>`` --
        on success the folder becomes ``versions/<n>`` (with ``version.json`` = ``record``
        plus its number, parent and the trained run it is folded from -- ``record``'s
        ``trained_run`` if given, else :meth:`trained_fingerprint` now -- and its own
        manifest), ``CURRENT`` names it (one atomic rename: readers see the old version or
        the new one, never a half-written one) and all but the last ``keep`` versions are
        deleted. One version is written at a time (:meth:`versions_lock`); what a killed
        write left behind is swept first; a name is never given twice (:meth:`drop_versions`).
        Files a version does not write are read from the trained run (:meth:`RunVersion.at`)."""
        record = {TRAINED_RUN: self.trained_fingerprint(), **record}
        with self.versions_lock():
            self.versions.mkdir(parents=True, exist_ok=True)
            for stale in self._version_leftovers():
                shutil.rmtree(stale, ignore_errors=True)
            parent = self.current_version()
            name = f"v{self._last_number() + 1:06d}"
            with atomic_directory(self.versions / name) as tmp:
                yield RunDir(tmp)
                write_json(tmp / "version.json", {**record, "version": name, "parent": parent})
                RunDir(tmp).write_manifest()
            write_text(self.path / CURRENT, name + "\n")
            for old in sorted(d for d in self.versions.glob("v*") if d.is_dir())[:-keep]:
                shutil.rmtree(old, ignore_errors=True)

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
        try:
            return json.loads(self.config_file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise IntegrityError(f"{self.config_file} is unreadable ({exc}); retrain the run "
                                 f"(kgrec train --run {self.path})", str(self.config_file), "all") from None

    def update_config(self, **sections: Any) -> None:
        """Set top-level sections of ``run.json`` (e.g. ``gnn=…``, ``store=…``), keeping the others."""
        values = {**self.config(), **sections}
        write_json(self.config_file, values)
        self._vouch_for(self.config_file)

    def record_ran_with(self, stage: str, **values: Any) -> None:
        """Note under ``run.json``'s ``ran_with`` section what ``stage`` ran with -- the torch
        threads ``"auto"`` resolved to, the device: float results depend on them, so these
        are the numbers to set to repeat the run (the configuration keeps what was asked)."""
        ran = dict(self.config().get(RAN_WITH, {}))
        ran[stage] = values
        self.update_config(**{RAN_WITH: ran})

    def _vouch_for(self, path: Path) -> None:
        """Record ``path``'s new size and hash in an existing manifest (the other entries
        stay as they were, so a file changed behind kgrec's back is still caught)."""
        manifest = self.path / MANIFEST
        if not manifest.exists():
            return
        files = {**self.manifest()}
        files[path.relative_to(self.path).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
        write_json(manifest, {"version": 1, "files": files})

    def store_location(self) -> dict[str, str] | None:
        """Where the graph this run was trained on lives (``GraphStore.location()``), if recorded."""
        return self.config().get("store")

    # ------------------------------------------------------------ integrity
    @staticmethod
    def stage_of(relpath: str) -> str:
        """The training stage that writes the file ``relpath`` (relative to the run folder)."""
        return _STAGE_OF.get(Path(relpath).parts[0], "gnn")

    def files(self) -> list[str]:
        """Every file of the run (relative POSIX paths, sorted), without the manifest, without
        hidden temporary files of an unfinished write, and without what live operation keeps
        beside the trained files (:data:`LIVE_PARTS`: run versions with their own manifests,
        ``CURRENT``, the events inbox) -- a stage retrained after ``kgrec update`` (the value
        stage, say) must not vouch for files that the next update replaces."""
        if not self.path.is_dir():
            return []
        out = []
        for p in self.path.rglob("*"):
            rel = p.relative_to(self.path)
            if (p.is_file() and rel.as_posix() != MANIFEST and not any(x.startswith(".") for x in rel.parts)
                    and rel.parts[0] not in LIVE_PARTS):
                out.append(rel.as_posix())
        return sorted(out)

    def drop_stage(self, stage: str) -> bool:
        """Delete what ``stage`` wrote here (its top-level files and folders, by
        :meth:`stage_of`) and its entries in the manifest, the other entries kept as recorded
        (a file changed behind kgrec's back is still caught: the manifest is not rewritten
        from the files). True if there was something to delete."""
        parts = [self.path / part for part, owner in _STAGE_OF.items() if owner == stage]
        present = [p for p in parts if p.exists()]
        for p in present:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        if present and (self.path / MANIFEST).exists():
            kept = {rel: entry for rel, entry in self.manifest().items() if self.stage_of(rel) != stage}
            write_json(self.path / MANIFEST, {"version": 1, "files": kept})
        return bool(present)

    def write_manifest(self) -> Path:
        """Record the size and SHA-256 of every file (the last write of each stage)."""
        entries = {rel: {"size": (self.path / rel).stat().st_size, "sha256": _sha256(self.path / rel)}
                   for rel in self.files()}
        return write_json(self.path / MANIFEST, {"version": 1, "files": entries})

    def manifest(self) -> dict[str, dict[str, Any]]:
        """``{relative path: {"size", "sha256"}}`` as recorded (IntegrityError when absent or unreadable)."""
        path = self.path / MANIFEST
        if not path.exists():
            if not self.path.exists():
                raise RunFolderError(f"no run folder at {self.path}; train one first (kgrec train --run {self.path})")
            if self._version_of() is not None:
                raise IntegrityError(f"{path} is missing: {self.path} is a run version whose writing did not "
                                     f"finish or was damaged; {self._advice('all')}", str(path), "all")
            raise IntegrityError(f"{path} is missing: {self.path} was written by an older kgrec or its "
                                 f"training did not finish; retrain it (kgrec train --run {self.path})",
                                 str(path), "all")
        try:
            files = json.loads(path.read_text())["files"]
            return {str(k): {"size": int(v["size"]), "sha256": str(v["sha256"])} for k, v in files.items()}
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"{path} is unreadable ({type(exc).__name__}); {self._advice('all')}",
                                 str(path), "all") from None

    def _version_of(self) -> Path | None:
        """The trained run this folder is a version of (``<run>/versions/v…``), else ``None``."""
        parent = self.path.parent
        if (parent.name == "versions" and _VERSION_NAME.fullmatch(self.path.name)
                and any((parent.parent / f).exists() for f in (MANIFEST, "run.json", CURRENT))):
            return parent.parent
        return None

    def _advice(self, stage: str) -> str:
        """What to do about a damaged file of ``stage`` here: retrain that stage -- or, in a
        run version (which no stage writes: ``kgrec update`` does), stop serving it."""
        run = self._version_of()
        if run is not None:
            return RunDir(run)._version_advice(self.path.name)
        if stage == "all":
            return f"retrain the run (kgrec train --run {self.path})"
        return f"retrain the {stage} stage (kgrec train --stage {stage} --run {self.path})"

    def _version_advice(self, name: str) -> str:
        """What to do about the damaged version ``name`` of this run (advice that works:
        ``kgrec update`` reads the served version first, and training writes no version)."""
        folder, current = self.versions / name, self.path / CURRENT
        try:
            served = self.current_version()
        except IntegrityError:
            served = None
        if served != name:
            return (f"{name} is not the version served ({f'{current} names {served}' if served else 'none is'}): "
                    f"delete its folder (`rm -r {folder}`)")
        older = [n for n in self.version_names() if int(n[1:]) < int(name[1:])]
        back = (f"write {older[-1]} into {current} to serve the version before it (`echo {older[-1]} > {current}`) "
                f"or delete {current} to serve the trained run" if older else
                f"delete {current} to serve the trained run")
        return (f"{name} is the version served: delete its folder (`rm -r {folder}`) and {back}; then "
                f"`kgrec update --run {self.path}` folds the store's newer events into a new version")

    def verify(self, stages: tuple[str, ...] | None = None) -> int:
        """Check the files of ``stages`` (default: all) against the manifest; returns how
        many were checked. The first missing, resized, changed or unreadable file raises an
        :class:`IntegrityError` that names it and the stage to retrain, and so does a fusion
        stage out of step with the stages before it (:meth:`check_built_on`)."""
        checked = 0
        for rel, want in self.manifest().items():
            stage = self.stage_of(rel)
            if stages is not None and stage not in stages and stage != "all":
                continue
            path = self.path / rel
            try:
                size = path.stat().st_size
                problem = None if size == want["size"] else f"{size:,} bytes, the manifest says {want['size']:,}"
                if problem is None and _sha256(path) != want["sha256"]:
                    problem = "its content changed (SHA-256 differs from the manifest)"
            except FileNotFoundError:
                problem = "the file is missing"
            except OSError as exc:
                problem = f"it cannot be read ({exc.strerror or exc})"
            if problem:
                raise IntegrityError(f"{path}: {problem}; {self._advice(stage)}", str(path), stage)
            checked += 1
        if stages is None or "fusion" in stages:
            self.check_built_on()
        return checked

    @contextlib.contextmanager
    def reading(self, path: Path, stage: str) -> Iterator[None]:
        """Turn any failure to parse ``path`` (a file or folder of stage ``stage``) into one
        :class:`IntegrityError` naming it (a file the manifest could not vouch for)."""
        try:
            yield
        except (IntegrityError, RunFolderError):
            raise
        except Exception as exc:  # noqa: BLE001 - any parser's error: say which file, not where in the parser
            raise IntegrityError(f"{path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
                                 f"{self._advice(stage)}", str(path), stage) from exc

    # ------------------------------------------------------------ split
    def save_split(self, split: Split) -> None:
        extra = {} if split.items is None else {"items": np.asarray(split.items, dtype=np.int64)}
        save_npz(self.split_file, sizes=np.array([split.num_users, split.num_items]),
                 train_u=split.train[0], train_i=split.train[1], valid_u=split.valid[0],
                 valid_i=split.valid[1], test_u=split.test[0], test_i=split.test[1],
                 left_out=np.array(split.left_out), **extra)

    def load_split(self) -> Split:
        z = np.load(self.need(self.split_file, "gnn"), allow_pickle=False)
        return Split(int(z["sizes"][0]), int(z["sizes"][1]), (z["train_u"], z["train_i"]),
                     (z["valid_u"], z["valid_i"]), (z["test_u"], z["test_i"]),
                     items=z["items"] if "items" in z.files else None,
                     left_out=int(z["left_out"]) if "left_out" in z.files else 0)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunVersion(RunDir):
    """A run seen through one of its versions (:meth:`RunDir.new_version`): a path that the
    version holds resolves into the version folder, any other into the trained run."""

    def __init__(self, path: str | os.PathLike, version: str | os.PathLike) -> None:
        super().__init__(path)
        self.version_path = Path(version)

    def __repr__(self) -> str:
        return f"RunVersion({str(self.path)!r}, {self.version_path.name!r})"

    @property
    def name(self) -> str:
        return self.version_path.name

    def at(self, relpath: str) -> Path:
        mine = self.version_path / relpath
        return mine if mine.exists() else self.path / relpath

    def record(self) -> dict[str, Any]:
        """The version's ``version.json``."""
        return json.loads((self.version_path / "version.json").read_text())

    def verify(self, stages: tuple[str, ...] | None = None) -> int:
        """The trained run's files and the version's own, each against its manifest."""
        return RunDir(self.path).verify(stages) + RunDir(self.version_path).verify(stages)

    @contextlib.contextmanager
    def reading(self, path: Path, stage: str) -> Iterator[None]:
        """:meth:`RunDir.reading`, with the advice of the folder that holds ``path`` (a file
        of the version is not retrained: see :meth:`RunDir._advice`)."""
        mine = Path(path).is_relative_to(self.version_path)
        with (RunDir(self.version_path) if mine else RunDir(self.path)).reading(path, stage):
            yield
