"""Reaching the MLflow store when campaigns share it: the tracking URI, a client, the store created once, retries.

Several campaigns (processes) may write to one store at once. A new SQLite file is migrated under a file lock
(`initialise_store`), and a write that loses a race to another writer (a unique-key clash, a busy database)
is retried with jittered back-off (`retry_conflicts`); any other refusal is raised at once.

A Ctrl-C or SIGTERM is held while a database session of the store is open (`signals_held`): raised inside a
SQLite transaction, it lost the write or left the transaction's lock held, and the interrupted campaign's own
closing writes then waited out SQLite's 20 s busy timeout twice and failed with "database is locked".
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from configs.schema import TrackingConfig
from tasks.progress import emit

T = TypeVar("T")
# What another writer's transaction can make an insert or update fail with, in the words each backend
# uses: SQLite, PostgreSQL (through the MLflow server as a RestException BAD_REQUEST), SQLAlchemy.
CONFLICT_SIGNS = (
    "unique constraint",
    "uniqueviolation",
    "duplicate key",
    "integrityerror",
    "database is locked",
    "could not serialize access",
    "deadlock detected",
)
CONFLICT_CODES = ("TEMPORARILY_UNAVAILABLE", "RESOURCE_ALREADY_EXISTS", "ABORTED")
_stores_ready: set[str] = set()  # tracking URIs whose store this process has initialised (`initialise_store`)
_stores_lock = threading.Lock()
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def is_conflict(error: BaseException) -> bool:
    """Whether `error` is one a concurrent writer can cause and a retry can clear (a unique-key race, a
    busy database), as opposed to a refusal that will not change (a changed param, a bad name)."""
    if not isinstance(error, MlflowException):
        return False
    if error.error_code in CONFLICT_CODES:
        return True
    text = str(error).lower()
    return any(sign in text for sign in CONFLICT_SIGNS)


def retry_conflicts(action: Callable[[], T], what: str, *, attempts: int = 6, delay: float = 0.05) -> T:
    """Run `action`, retrying up to `attempts` times in all while it fails with a conflict (`is_conflict`).

    The back-off doubles from `delay` seconds with +-50% jitter, so two writers that collided once do not
    collide again in lock step. Any other error, or the last conflict, is raised as it is.

    Args:
        action: The write; it must be safe to repeat (idempotent, or re-checking what exists first).
        what: What is written, for the note attached to a conflict that outlived its retries.
        attempts: How many times to try in all.
        delay: The first back-off in seconds.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except MlflowException as error:
            if attempt == attempts or not is_conflict(error):
                if attempt > 1:
                    error.add_note(f"selftrain: {what}: still conflicting after {attempt} attempts")
                raise
            reason = str(error).strip().splitlines()[0][:100] if str(error).strip() else error.error_code
            emit(f"{what}: another writer got there first ({reason}); retry {attempt}/{attempts - 1}")
            time.sleep(delay * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable: the loop returns or raises")


def initialise_store(uri: str) -> None:
    """Create the tables of a SQLite store once, under an exclusive lock on `<db>.lock` beside the file.

    MLflow migrates a new SQLite file (Alembic) when a process first touches it, without a lock of its
    own, so two campaigns starting together in a new output folder crash each other. The first process
    to hold the lock migrates; the others wait, then find the tables ready. A new file is built under a
    temporary name and renamed into place when every table is there, so a process killed while it migrates
    leaves no half-built store that every later run would fail on (it leaves the temporary file, removed by
    the next process to take the lock). Done once per process and URI, before any other MLflow call; server
    URIs need nothing (the server owns its schema).
    """
    with _stores_lock:
        if uri in _stores_ready:
            return
        db = sqlite_file(uri)
        if db is not None:
            # The store modules take seconds to import on a loaded machine: not while holding the lock.
            for module in (
                "mlflow.store.tracking.sqlalchemy_store",
                "mlflow.store.model_registry.sqlalchemy_store",
            ):
                importlib.import_module(module)
            db.parent.mkdir(parents=True, exist_ok=True)
            with open(db.with_name(db.name + ".lock"), "a", encoding="utf-8") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or by the kernel on death
                for stale in db.parent.glob(f"{db.name}.building-*"):  # a killed builder's
                    stale.unlink(missing_ok=True)
                if db.exists():
                    _touch_stores(uri)  # an existing store: MLflow upgrades its schema if it must
                else:
                    building = db.with_name(f"{db.name}.building-{os.getpid()}")
                    _touch_stores(f"sqlite:///{building.resolve()}")
                    os.replace(building, db)  # atomic: the store appears whole or not at all
                    _touch_stores(uri)
        _stores_ready.add(uri)


def sqlite_file(uri: str) -> Path | None:
    """The database file a `sqlite:` tracking URI names (relative to the working folder when it is relative, as
    SQLAlchemy reads it); None for another scheme or an in-memory store."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(uri).database
    except ArgumentError:
        raise ValueError(f"not a sqlite URL (expected sqlite:///<folder>/mlflow.db): {uri}") from None
    return Path(database) if database and database != ":memory:" else None


def _touch_stores(uri: str) -> None:
    """Build MLflow's tracking and registry stores on `uri` (migrating a new SQLite file)."""
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)


def tracking_uri(cfg: TrackingConfig) -> str:
    """The configured URI, else MLFLOW_TRACKING_URI, else a SQLite file in the output folder."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(cfg.output_dir).resolve() / 'mlflow.db'}"


def client_for(cfg: TrackingConfig) -> MlflowClient:
    """A client bound to the campaign's tracking URI (no global state is changed); a new SQLite store is
    initialised first, once, under its lock (`initialise_store`)."""
    uri = tracking_uri(cfg)
    initialise_store(uri)
    client = MlflowClient(tracking_uri=uri)
    for store in (client._tracking_client.store, client._get_registry_client().store):
        hold_signals_in_sessions(store)
    return client


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first one to the handler it would have met.

    Outside the main thread (where Python runs no handler), or when a handler was not set from Python, the
    block runs as is.
    """
    previous = {signum: signal.getsignal(signum) for signum in HELD_SIGNALS}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield
        return
    held: list[int] = []
    for signum in HELD_SIGNALS:
        signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])


def hold_signals_in_sessions(store: object) -> None:
    """Open every database session of an MLflow SQL store (tracking or registry) under `signals_held`, so a
    Ctrl-C never lands inside a transaction; a store reached over HTTP has no sessions and is left as is."""
    make_session = getattr(store, "ManagedSessionMaker", None)
    if make_session is None or getattr(make_session, "holds_signals", False):
        return

    @contextlib.contextmanager
    def held_session(*args: object, **kwargs: object) -> Iterator[object]:
        with signals_held(), make_session(*args, **kwargs) as session:
            yield session

    held_session.holds_signals = True  # type: ignore[attr-defined]
    store.ManagedSessionMaker = held_session  # type: ignore[attr-defined]


def ensure_experiment(cfg: TrackingConfig) -> str:
    """The experiment id, creating the experiment (with a local artifact folder for SQLite) if needed.

    Another campaign may create it at the same moment: its "already exists" (or unique-key conflict)
    sends this one back to read the experiment the other made.
    """
    client = client_for(cfg)
    location = None
    if tracking_uri(cfg).startswith("sqlite:"):
        location = (Path(cfg.output_dir).resolve() / "mlartifacts").as_uri()

    def get_or_create() -> str:
        found = client.get_experiment_by_name(cfg.experiment)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(cfg.experiment, artifact_location=location)

    return retry_conflicts(get_or_create, f"experiment {cfg.experiment!r}")
