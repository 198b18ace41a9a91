"""The embedded store: etcd's revisioned key-value model on one SQLite file.

Why it is shaped this way (and what it trades):

* **Memory serves every read.** The current state (key -> KeyValue, plus a sorted key
  list for prefix ranges) and the watch history live in memory; ``get``/``list``/``count``
  and history replay never touch the disk and never contend with the writer. The cost is
  RAM: every live object and every retained event is held once (a few hundred MB for
  100,000 objects of a few KB; kube-apiserver's watch cache makes the same choice). The
  sorted key list is a plain Python list, so a create or delete moves pointers in O(n):
  microseconds at 50,000 keys, worth revisiting past a few hundred thousand.
* **One writer thread, group commit.** Writes are validated on the event loop against
  the committed state plus the not-yet-committed writes (so compare-and-swap is decided
  the moment a write arrives and revisions are handed out in order), then queued. A
  single thread owns the one writing SQLite connection and commits everything queued since its
  last commit as one transaction. Under load a transaction carries tens or hundreds of
  writes, which is what makes thousands of writes per second cheap; alone, a write waits
  for one commit. A commit is a single multi-row INSERT into ``log`` (triggers update
  ``kv`` and the revision counter within it): every SQLite call from the writer thread
  has to win the GIL back from the busy event loop, up to a switch interval (5 ms) each,
  and the five calls of a BEGIN/INSERT/UPSERT/UPDATE/COMMIT commit made it 10-20 ms under
  load; one call made the API's p99 at 2,000 writes/s go from 25 to 12 ms.
  Nothing else writes, so "database is locked" cannot happen inside the
  process, and a lock file (``<path>.lock``) makes a second process opening the same
  store fail at once instead of silently making our in-memory view stale.
* **Checkpoints off the commit path.** A second connection on its own thread copies the
  WAL into the database file while commits go on. Left to the writer, each checkpoint
  stalls the commits queued behind it (p99 of 10 ms instead of 3 ms at 2,000 writes/s);
  the writer's automatic checkpoint remains as the WAL's size bound, so a sustained flood
  that outruns the background still pays it.
* **Acknowledged means committed.** A write's future, the in-memory state and the
  watchers are updated only after COMMIT returned, in revision order. If a commit fails
  (disk full, I/O error) the store becomes unusable and every call raises: the
  in-memory state still equals the disk, but nothing that was not written is ever
  served, and the API server should exit so that a supervisor restarts it.
* **Durability.** WAL with ``synchronous=NORMAL`` (the default) survives a crash or
  ``kill -9`` of the process: a committed transaction is in the WAL file in the OS page
  cache. It can lose the last transactions on power loss or a kernel crash; pass
  ``synchronous="FULL"`` to fsync every commit (group commit keeps that affordable).
* **Tables.** ``kv`` holds the current value of each key (primary key ``key``), so no
  "latest row per key" query exists; ``log`` holds one row per revision (the event, with
  the previous value so that replayed events carry ``prev`` exactly as live ones), and
  ``meta`` the revision counter and the compacted revision, written in the same
  transaction as the data so revisions are never reused, even after compaction.
* **Compaction** runs in the background on a timer and whenever the history exceeds its
  bound. It keeps the events of the last ``history_window`` seconds, and never more than
  ``history_max_events``. Memory is trimmed first (so memory stays bounded even if the
  disk side fails); the disk side deletes old log rows in chunks of revisions, logs
  failures and retries on the next tick. ``last_compaction`` and
  ``last_compaction_error`` show whether it is healthy.
* **Giving space back.** Deleted rows leave free pages that later writes reuse, so the
  file only ever grew to its peak (620 MB kept after one 200 MB object came and went).
  When a compaction leaves much of the file free, ``reclaim`` hands the free pages back
  with incremental vacuum (``auto_vacuum=INCREMENTAL``), in steps sized to take about
  ``_VACUUM_STEP_SECONDS`` each on the writer thread, commits running between them, so a
  write waits at most one step (one whole vacuum took 10.5 s on 620 MB); the background
  checkpoint then truncates the file. ``health()`` reports the file's size, the bytes in
  use and the free pages. Files made without ``auto_vacuum`` (by other tools, or copies)
  are converted with one VACUUM at start-up when their live data is small enough to
  rewrite in a couple of seconds (see ``_MIGRATE_MAX_BYTES``); a VACUUM is one
  transaction that cannot be split, so it never runs while the store serves.
* **Watch fan-out.** All watchers read the one shared history list through their own
  cursor; a commit only wakes them, and each takes what it committed as one batch
  (``watch_batches``), so the API server sends one write per commit, not per event. A watcher whose consumer does not keep up costs no
  memory of its own; once compaction drops events it has not read yet, its iterator ends
  with "too slow" and the client re-watches (or relists on 410), as with etcd.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Literal, NoReturn, TypeVar

from kubelite.store._protocol import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    StoreError,
    StoreHealth,
    WatchBatch,
    WatchEvent,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key             TEXT PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL
);
-- One row per revision. value is NULL for a delete (the deleted value is prev_value),
-- prev_* are NULL for a create.
CREATE TABLE IF NOT EXISTS log (
    revision          INTEGER PRIMARY KEY,
    key               TEXT NOT NULL,
    type              INTEGER NOT NULL,
    create_revision   INTEGER NOT NULL,
    value             BLOB,
    prev_mod_revision INTEGER,
    prev_value        BLOB
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('revision', 1), ('compacted', 1);
-- A commit is one INSERT into log: these keep kv and the revision counter in step, inside
-- that same statement (see _commit for why).
CREATE TRIGGER IF NOT EXISTS log_put AFTER INSERT ON log WHEN NEW.type != 2 BEGIN
    INSERT INTO kv VALUES (NEW.key, NEW.value, NEW.create_revision, NEW.revision)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value,
            create_revision = excluded.create_revision, mod_revision = excluded.mod_revision;
    UPDATE meta SET value = NEW.revision WHERE name = 'revision';
END;
CREATE TRIGGER IF NOT EXISTS log_delete AFTER INSERT ON log WHEN NEW.type = 2 BEGIN
    DELETE FROM kv WHERE key = NEW.key;
    UPDATE meta SET value = NEW.revision WHERE name = 'revision';
END;
COMMIT;
"""

_TYPE_CODES = {"ADDED": 0, "MODIFIED": 1, "DELETED": 2}

# A watcher takes at most this many events from the shared history per step, so that one
# far-behind watcher does not hold the event loop while it filters.
_WATCH_CHUNK = 1024


class _Watcher:
    """What a commit needs to know of one watcher to decide whether to wake it."""

    __slots__ = ("dozing", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # Waiting out its progress interval, with the cursor already past events of other
        # prefixes: only its own keys (or the timer) need to wake it.
        self.dozing = False

# Seconds between background checkpoints while writes keep coming: each one costs an fsync
# of the WAL and of the database file, so they are paced rather than run after every commit.
_CHECKPOINT_PAUSE = 0.05

# Compaction deletes old log rows this many revisions per statement, each its own call on
# the writer thread, so that commits queued meanwhile wait for one chunk, not for all.
_DELETE_CHUNK = 250

# After each compaction the compactor keeps as many free pages as the writes since its last
# round took (reused free pages plus the file's growth): under steady churn a compaction
# frees about what the next interval's writes will take again, and handing it back would
# only make the file shrink and regrow (WAL traffic for nothing). The rest is given back
# when it is more than _VACUUM_MIN_FREE pages and a quarter of the file; ``reclaim()``
# called directly frees all but _VACUUM_KEEP_FREE. The floor is small on purpose: an idle
# cluster's file is well under 1 MB, and a floor of 256 pages (1 MB) left it at 14x its
# size after 20,000 ConfigMaps came and went (the last compaction freed 245 pages).
_VACUUM_MIN_FREE = 8
_VACUUM_KEEP_FREE = 0
# What one incremental vacuum step may hold the writer for: the step size (pages) follows
# the time the last step took, within these bounds. A page at the file's end is freed in
# microseconds; one that must first move elsewhere costs tens of them.
_VACUUM_STEP_SECONDS = 0.005
_VACUUM_STEP_PAGES = (16, 16384)
# Between steps the writer is left alone this long, for the commits queued behind a step
# and for the background checkpoint that truncates the file.
_VACUUM_PAUSE = 0.005

# A file made without auto_vacuum is converted by VACUUM at start-up only up to this much
# live data: VACUUM rewrites every live page in one transaction (about 140 MB/s here, so
# about 2 s at this bound) and needs that much free disk again. Past it, start-up is not
# held for minutes: the store logs how to convert the file offline and reuses free pages.
_MIGRATE_MAX_BYTES = 256 * 2**20


# Each SQLite call gives up the GIL and must take it back, which costs a whole switch
# interval (5 ms) whenever the event loop is busy, as it is under load: a commit made of
# BEGIN, an insert per table, the counter and COMMIT waited for the GIL five times or more
# (10-20 ms per commit at 2,000 writes/s). So a batch goes in as one multi-row INSERT into
# log, run on its own (autocommit: the statement is the transaction), and triggers keep kv
# and the revision counter in step: one SQLite call per commit. A batch past _MAX_CHUNK rows
# takes more statements inside an explicit transaction.
_INSERT_LOG = "INSERT INTO log VALUES "
_ROW_SQL = "(?, ?, ?, ?, ?, ?, ?)"
_MAX_CHUNK = 256  # rows per statement: 1,792 parameters, far below SQLite's limit


def _many_rows(rows: Sequence[tuple[object, ...]]) -> builtins.list[tuple[str, builtins.list[object]]]:
    """(sql, flat parameters) statements that insert ``rows`` into log."""
    out = []
    for i in range(0, len(rows), _MAX_CHUNK):
        chunk = rows[i : i + _MAX_CHUNK]
        out.append((_statement(len(chunk)), [v for row in chunk for v in row]))
    return out


_statements: dict[int, str] = {}


def _statement(n: int) -> str:
    sql = _statements.get(n)
    if sql is None:
        sql = _statements[n] = _INSERT_LOG + ", ".join([_ROW_SQL] * n)
    return sql


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(slots=True)
class _Write:
    event: WatchEvent
    done: asyncio.Future[KeyValue]


def _compact(value: bytes) -> bytes:
    """A copy of ``value`` in an allocation of its own size.

    Values are kept in memory for as long as the key lives (and in the watch history), and
    orjson, which encodes nearly all of them, returns bytes in a buffer sized for growth: a
    560-byte ConfigMap held 4 to 8 KB (20,000 ConfigMaps: +112 MB of RSS, +45 MB with the
    copy). The copy costs a memcpy per write.
    """
    return bytes(memoryview(value))


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    return stem[:-1] + chr(ord(stem[-1]) + 1)


class SqliteStore:
    """The Store protocol on one SQLite file (see the module docstring for the design).

    ``synchronous``: "NORMAL" survives process crashes, "FULL" also power loss.
    ``history_window`` (seconds) and ``history_max_events``: how much watch history is
    kept; compaction drops what is older than the window or beyond the count.
    ``compact_interval``: seconds between background compactions (and retries).
    ``busy_timeout``: how long ``start`` waits for another process to let go of the store.
    ``progress_interval``: how often at most a watcher with nothing under its prefix gets a
    progress batch while other keys change.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: Synchronous = "NORMAL",
        history_window: float = 300.0,
        history_max_events: int = 20_000,
        compact_interval: float = 30.0,
        busy_timeout: float = 1.0,
        progress_interval: float = 1.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = path
        self._synchronous = synchronous
        self._history_window = history_window
        self._history_max_events = history_max_events
        self._compact_interval = compact_interval
        self._busy_timeout = busy_timeout
        self._progress_interval = progress_interval
        # Compaction runs early when the history outgrows its bound by this much, so that
        # it trims in steps rather than after every commit.
        self._history_slack = max(history_max_events // 10, 100)

        self._state = _State.NEW
        self._failure: BaseException | None = None
        self._db: sqlite3.Connection | None = None
        self._lock_fd = -1
        self._checkpoint_db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubelite-store-writer")
        self._checkpoint_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kubelite-store-checkpointer"
        )

        # Committed state, only touched on the event loop.
        self._kvs: dict[str, KeyValue] = {}
        self._keys: builtins.list[str] = []
        self._revision = 1
        self._compacted = 1
        # _history[i] is the event of revision _compacted + 1 + i: one per revision, no gaps.
        self._history: builtins.list[WatchEvent] = []
        # (monotonic time, last revision) of each commit, to compact by age.
        self._commit_times: deque[tuple[float, int]] = deque()
        # Each watcher's wake-up event -> its state (see _Watcher).
        self._watchers: dict[asyncio.Event, _Watcher] = {}

        # Accepted but not yet committed writes.
        self._assigned = 1
        self._queue: builtins.list[_Write] = []
        self._uncommitted: dict[str, _Write] = {}

        self.last_compaction: float | None = None
        self.last_compaction_error: str | None = None
        # The file has auto_vacuum=INCREMENTAL (decided at start-up), so reclaim can work.
        self._incremental = False
        # Pages of the next incremental vacuum step: adapts to how long steps take here.
        self._vacuum_step_pages = 64
        # (pages, free pages) after the last reclaim round, and just before the last compaction's
        # deletes: the difference is what writes took in between.
        self._last_page_counts: tuple[int, int] | None = None
        self._pre_compact_counts = (0, 0)
        self._reclaimer: asyncio.Task[None] | None = None
        self._flush_wanted = asyncio.Event()
        self._compact_wanted = asyncio.Event()
        self._checkpoint_wanted = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._state is not _State.NEW:
            raise StoreError(f"store {self.path} was already started")
        await self._in_writer(self._open)
        self._state = _State.OPEN
        self._commit_times.append((time.monotonic(), self._revision))
        if len(self._history) > self._history_max_events:
            self._compact_wanted.set()
        self._flusher = asyncio.create_task(self._flush_loop(), name="kubelite-store-flusher")
        self._compactor = asyncio.create_task(self._compact_loop(), name="kubelite-store-compactor")
        self._checkpointer = asyncio.create_task(self._checkpoint_loop(), name="kubelite-store-checkpointer")

    async def close(self) -> None:
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
        # Writes accepted before close still commit and are acknowledged.
        self._flush_wanted.set()
        if self._flusher is not None:
            await self._flusher
        for task in (self._compactor, self._reclaimer, self._checkpointer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._wake_watchers()
        if self._checkpoint_db is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._checkpoint_executor, self._checkpoint_db.close
            )
            self._checkpoint_db = None
        if self._db is not None:
            await self._in_writer(self._db.close)
            self._db = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._checkpoint_executor.shutdown()
        self._executor.shutdown()
        if self._state is _State.NEW:
            self._state = _State.CLOSED

    def _open(self) -> None:
        lock = self._lock()
        opened: builtins.list[sqlite3.Connection] = []
        try:
            # Room for a prepared INSERT of every batch size up to _MAX_CHUNK.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 cached_statements=_MAX_CHUNK + 64)
            opened.append(db)
            # Takes effect at once on a new file (before any table exists); an existing file
            # made without it keeps its mode until a VACUUM (_migrate_auto_vacuum).
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (journal_mode is {mode})")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            # The background checkpointer does the copying; the writer's own automatic
            # checkpoint stays as a bound on the WAL and then only finds a few pages left.
            db.execute("PRAGMA wal_autocheckpoint = 1000")
            db.execute("PRAGMA journal_size_limit = 16777216")
            db.execute("PRAGMA cache_size = -32000")
            self._migrate_auto_vacuum(db)
            db.executescript(_SCHEMA)
            self._load(db)
            checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            opened.append(checkpointer)
        except BaseException as exc:
            for conn in opened:
                conn.close()
            os.close(lock)
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open store {self.path}: {exc}") from exc
            raise
        self._lock_fd, self._db, self._checkpoint_db = lock, db, checkpointer

    def _migrate_auto_vacuum(self, db: sqlite3.Connection) -> None:
        """Turns on incremental vacuum for a file made without it, if that is cheap enough now.

        Only at start-up, before anything is served: the VACUUM this takes cannot be split
        into steps, and would stall every write for its whole duration.
        """
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # INCREMENTAL
            self._incremental = True
            return
        pages, free, page_size = db.execute(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
        ).fetchone()
        in_use = (pages - free) * page_size
        if in_use > _MIGRATE_MAX_BYTES:
            log.warning(
                "store %s: the file was made without auto_vacuum, so its free space (%d pages) is"
                " never given back; it holds %d MB of data, too much to convert at start-up: stop"
                " kubelite and run: sqlite3 %s 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM'",
                self.path, free, in_use // 10**6, self.path,
            )
            self._incremental = False
            return
        started = time.monotonic()
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        try:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            # A full disk, say (VACUUM needs room for a copy): the file is as it was, and still
            # serves; only its free space stays. Not worth refusing to start for.
            log.warning("store %s: could not convert the file to incremental vacuum: %s", self.path, exc)
            self._incremental = False
            return
        self._incremental = db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        log.info(
            "store %s: converted to incremental vacuum in %.1fs (%d MB of data, %d free pages dropped)",
            self.path, time.monotonic() - started, in_use // 10**6, free,
        )

    def _lock(self) -> int:
        """Takes the store's lock file: one process per store, or its in-memory state goes stale."""
        try:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreError(f"store {self.path} is in use by another process") from None
                time.sleep(0.05)

    def _load(self, db: sqlite3.Connection) -> None:
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        self._revision = self._assigned = meta["revision"]
        self._compacted = meta["compacted"]
        self._kvs = {
            key: KeyValue(key, value, create, mod)
            for key, value, create, mod in db.execute(
                "SELECT key, value, create_revision, mod_revision FROM kv"
            )
        }
        self._keys = sorted(self._kvs)
        history: builtins.list[WatchEvent] = []
        for rev, key, code, create, value, prev_mod, prev_value in db.execute(
            "SELECT revision, key, type, create_revision, value, prev_mod_revision, prev_value"
            " FROM log WHERE revision > ? ORDER BY revision",
            (self._compacted,),
        ):
            if code == 0:
                history.append(WatchEvent("ADDED", KeyValue(key, value, rev, rev), None))
            else:
                prev = KeyValue(key, prev_value, create, prev_mod)
                if code == 1:
                    history.append(WatchEvent("MODIFIED", KeyValue(key, value, create, rev), prev))
                else:
                    history.append(WatchEvent("DELETED", KeyValue(key, prev_value, create, rev), prev))
        if len(history) != self._revision - self._compacted or (
            history and history[0].kv.mod_revision != self._compacted + 1
        ):
            raise StoreError(
                f"store {self.path} is inconsistent: history holds {len(history)} events"
                f" between compacted revision {self._compacted} and revision {self._revision}"
            )
        self._history = history

    async def _in_writer(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _check_usable(self) -> None:
        if self._state is _State.OPEN:
            return
        if self._state is _State.FAILED:
            raise StoreError(f"store {self.path} is unusable after a failed commit: {self._failure}")
        raise StoreError(f"store {self.path} is {self._state.value}")

    # -- reads (memory only) -----------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KeyValue | None:
        return self.get_now(key)

    # Reads are served from memory and never wait: these synchronous forms let the store
    # server (kubelite.store.remote) answer them without a task per call.
    def get_now(self, key: str) -> KeyValue | None:
        self._check_usable()
        return self._kvs.get(key)

    def _range(self, prefix: str) -> tuple[int, int]:
        keys = self._keys
        end = _prefix_end(prefix)
        return bisect.bisect_left(keys, prefix), len(keys) if end is None else bisect.bisect_left(keys, end)

    async def list(
        self, prefix: str, *, start_after: str = "", limit: int = 0
    ) -> tuple[builtins.list[KeyValue], int, bool]:
        return self.list_now(prefix, start_after=start_after, limit=limit)

    def list_now(
        self, prefix: str, *, start_after: str = "", limit: int = 0
    ) -> tuple[builtins.list[KeyValue], int, bool]:
        self._check_usable()
        lo, hi = self._range(prefix)
        if start_after:
            lo = max(lo, bisect.bisect_right(self._keys, start_after))
        more = 0 < limit < hi - lo
        if more:
            hi = lo + limit
        kvs = self._kvs
        return [kvs[key] for key in self._keys[lo:hi]], self._revision, more

    async def count(self, prefix: str) -> int:
        return self.count_now(prefix)

    def count_now(self, prefix: str) -> int:
        self._check_usable()
        lo, hi = self._range(prefix)
        return hi - lo

    # -- writes ------------------------------------------------------------------------

    def _current(self, key: str) -> KeyValue | None:
        """The key's value including accepted writes that are still committing."""
        pending = self._uncommitted.get(key)
        if pending is None:
            return self._kvs.get(key)
        return None if pending.event.type == "DELETED" else pending.event.kv

    async def _refuse(self, key: str, error: StoreError) -> NoReturn:
        """Raises ``error`` once the still-committing write to ``key`` that caused it, if any, is in.

        A client that gets a conflict re-reads and retries; it must then read the value that
        beat it, not the older committed one, or it would conflict again and again.
        """
        pending = self._uncommitted.get(key)
        if pending is not None:
            await asyncio.shield(pending.done)
        raise error

    async def _current_for_swap(self, key: str, expected_mod_revision: int) -> KeyValue:
        current = self._current(key)
        if current is None:
            await self._refuse(key, KeyNotFoundError(key))
        if expected_mod_revision and current.mod_revision != expected_mod_revision:
            await self._refuse(key, ConflictError(key, current))
        return current

    async def _enqueue(self, event: WatchEvent) -> KeyValue:
        write = _Write(event, asyncio.get_running_loop().create_future())
        self._queue.append(write)
        self._uncommitted[event.kv.key] = write
        self._flush_wanted.set()
        # Shielded: a caller that gives up must not cancel the future others may wait on;
        # the write commits anyway, as with etcd.
        return await asyncio.shield(write.done)

    def _next_revision(self) -> int:
        self._assigned += 1
        return self._assigned

    # Validation, revision assignment and queueing happen without an await in between, so
    # writes are decided and numbered in the order they arrive.

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._check_usable()
        if self._current(key) is not None:
            await self._refuse(key, KeyExistsError(key))
        rev = self._next_revision()
        return await self._enqueue(WatchEvent("ADDED", KeyValue(key, _compact(value), rev, rev), None))

    async def update(self, key: str, value: bytes, expected_mod_revision: int = 0) -> KeyValue:
        self._check_usable()
        current = await self._current_for_swap(key, expected_mod_revision)
        kv = KeyValue(key, _compact(value), current.create_revision, self._next_revision())
        return await self._enqueue(WatchEvent("MODIFIED", kv, current))

    async def delete(self, key: str, expected_mod_revision: int = 0) -> KeyValue:
        self._check_usable()
        current = await self._current_for_swap(key, expected_mod_revision)
        kv = KeyValue(key, current.value, current.create_revision, self._next_revision())
        return await self._enqueue(WatchEvent("DELETED", kv, current))

    async def _flush_loop(self) -> None:
        while True:
            if not self._queue:
                if self._state is not _State.OPEN:
                    return
                self._flush_wanted.clear()
                await self._flush_wanted.wait()
                continue
            batch, self._queue = self._queue, []
            try:
                await self._in_writer(self._commit, [write.event for write in batch])
                self._apply(batch)
            except Exception as exc:
                self._fail(exc, batch)
                return

    def _commit(self, events: builtins.list[WatchEvent]) -> None:
        db = self._db
        assert db is not None
        rows = [
            (
                ev.kv.mod_revision,
                ev.kv.key,
                _TYPE_CODES[ev.type],
                ev.kv.create_revision,
                None if ev.type == "DELETED" else ev.kv.value,
                None if ev.prev is None else ev.prev.mod_revision,
                None if ev.prev is None else ev.prev.value,
            )
            for ev in events
        ]
        statements = _many_rows(rows)
        if len(statements) == 1:
            db.execute(*statements[0])  # autocommit: all or nothing, in one SQLite call
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                db.execute(sql, params)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback after a failed commit failed too")
            raise

    def _apply(self, batch: builtins.list[_Write]) -> None:
        kvs, keys, uncommitted = self._kvs, self._keys, self._uncommitted
        for write in batch:
            ev = write.event
            key = ev.kv.key
            if ev.type == "DELETED":
                del kvs[key]
                del keys[bisect.bisect_left(keys, key)]
            else:
                if ev.type == "ADDED":
                    bisect.insort(keys, key)
                kvs[key] = ev.kv
            if uncommitted.get(key) is write:
                del uncommitted[key]
            self._history.append(ev)
        self._revision = batch[-1].event.kv.mod_revision
        self._commit_times.append((time.monotonic(), self._revision))
        for write in batch:
            if not write.done.done():
                write.done.set_result(write.event.kv)
        self._wake_watchers(batch)
        self._checkpoint_wanted.set()
        if len(self._history) > self._history_max_events + self._history_slack:
            self._compact_wanted.set()

    def _fail(self, exc: BaseException, batch: builtins.list[_Write]) -> None:
        log.critical("store %s: commit failed, the store is now unusable: %s", self.path, exc, exc_info=exc)
        self._state = _State.FAILED
        self._failure = exc
        error = StoreError(f"store {self.path}: commit failed: {exc}")
        for write in batch + self._queue:
            if not write.done.done():
                write.done.set_exception(error)
        self._queue = []
        self._uncommitted.clear()
        self._wake_watchers()

    # -- watch -------------------------------------------------------------------------

    def _wake_watchers(self, batch: builtins.list[_Write] | None = None) -> None:
        """Wake the watchers ``batch`` (None: every one, the store closing or failing) concerns.

        A watcher already waiting out its progress interval sleeps through commits of other
        prefixes: its timer catches it up on them, so each commit wakes the watchers of its
        keys, not every internal cache and watch stream of the server (a wake-up per watcher
        per write was a measurable share of every write's CPU).
        """
        if batch is None:
            for wake in self._watchers:
                wake.set()
            return
        # The batch's keys and every prefix of them that ends at a '/': watchers' prefixes
        # are mostly of that shape (a kind, a kind in a namespace), so most are one set
        # lookup; only another shape of prefix is compared key by key.
        keys = [write.event.kv.key for write in batch]
        prefixes = set(keys)
        for key in keys:
            cut = key.find("/")
            while cut >= 0:
                prefixes.add(key[: cut + 1])
                cut = key.find("/", cut + 1)
        for wake, w in self._watchers.items():
            if (not w.dozing or w.prefix in prefixes
                    or (not w.prefix.endswith("/") and any(key.startswith(w.prefix) for key in keys))):
                wake.set()

    def watch(self, prefix: str, from_revision: int = 0) -> AsyncIterator[WatchEvent]:
        # "From now" is decided here, not at the first iteration, so that nothing written
        # between the call and the consumer's first read is lost.
        return self._watch_events(self._watch(prefix, from_revision, from_revision or self._revision))

    def watch_batches(self, prefix: str, from_revision: int = 0) -> AsyncGenerator[WatchBatch, None]:
        return self._watch(prefix, from_revision, from_revision or self._revision)

    @staticmethod
    async def _watch_events(batches: AsyncGenerator[WatchBatch, None]) -> AsyncIterator[WatchEvent]:
        async with contextlib.aclosing(batches):  # the watcher leaves the set when its consumer does
            async for batch in batches:
                for ev in batch.events:
                    yield ev

    async def _watch(
        self, prefix: str, requested: int, cursor: int
    ) -> AsyncGenerator[WatchBatch, None]:
        self._check_usable()
        if requested and requested < self._compacted:
            raise CompactedError(requested, self._compacted)
        wake = asyncio.Event()
        w = _Watcher(prefix)
        self._watchers[wake] = w
        reported = time.monotonic()
        unreported = False  # the cursor moved past other prefixes' events since the last batch
        try:
            while True:
                self._check_usable()
                if cursor >= self._revision:
                    wake.clear()
                    if not unreported:
                        await wake.wait()
                        continue
                    # Caught up with progress not told yet: tell it when the interval is up.
                    left = self._progress_interval - (time.monotonic() - reported)
                    if left > 0:
                        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                        # cancellation that arrives as the wait completes, and a cancelled
                        # watch (a cache stopping) then never ends.
                        w.dozing = True
                        try:
                            with contextlib.suppress(TimeoutError):
                                async with asyncio.timeout(left):
                                    await wake.wait()
                        finally:
                            w.dozing = False
                        if not wake.is_set():
                            # Slept through the whole interval: every commit since was of
                            # other prefixes (one of ours would have woken us), so the
                            # cursor moves to the newest revision with nothing to send.
                            cursor = self._revision
                        continue
                    yield WatchBatch([], cursor)
                    reported, unreported = time.monotonic(), False
                    continue
                first = cursor - self._compacted
                if first < 0:
                    raise StoreError(
                        f"watcher too slow: it is at revision {cursor}, history was compacted"
                        f" up to revision {self._compacted}"
                    )
                chunk = self._history[first : first + _WATCH_CHUNK]
                cursor = chunk[-1].kv.mod_revision
                batch = [ev for ev in chunk if ev.kv.key.startswith(prefix)]
                if batch:
                    yield WatchBatch(batch, cursor)
                    reported, unreported = time.monotonic(), False
                elif time.monotonic() - reported >= self._progress_interval:
                    yield WatchBatch([], cursor)
                    reported, unreported = time.monotonic(), False
                else:
                    unreported = True
        finally:
            self._watchers.pop(wake, None)

    # -- compaction --------------------------------------------------------------------

    async def health(self) -> StoreHealth:
        if self._state is not _State.OPEN:
            return StoreHealth(error=f"store {self.path} is {self._state.value}")
        size = in_use = free = None
        try:
            # From the checkpointer's connection: a read there never waits for the writer.
            size, pages, free, page_size = await asyncio.get_running_loop().run_in_executor(
                self._checkpoint_executor, self._file_sizes
            )
            in_use = (pages - free) * page_size
        except (sqlite3.Error, OSError) as exc:
            log.warning("store %s: cannot read the file's size: %s", self.path, exc)
        return StoreHealth(compaction_error=self.last_compaction_error, size_bytes=size,
                           in_use_bytes=in_use, free_pages=free)

    def _file_sizes(self) -> tuple[int, int, int, int]:
        """(file size, pages, free pages, page size): the file now, the pages as last committed."""
        assert self._checkpoint_db is not None
        row = self._checkpoint_db.execute(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
        ).fetchone()
        return os.path.getsize(self.path), int(row[0]), int(row[1]), int(row[2])

    async def compact(self, revision: int) -> None:
        """Forget the history at and below ``revision``; watches from below it get CompactedError."""
        self._check_usable()
        if revision > self._revision:
            raise StoreError(f"mvcc: required revision is a future revision ({revision} > {self._revision})")
        if revision > self._compacted:
            # Memory first: what a watcher can replay must never depend on the disk side
            # succeeding, and the disk side catches up on the next run if it fails.
            del self._history[: revision - self._compacted]
            self._compacted = revision
            while self._commit_times and self._commit_times[0][1] <= revision:
                self._commit_times.popleft()
        compacted = self._compacted  # also when ``revision`` is older: the disk may lag behind
        # The counter first, then the rows: a crash in between leaves rows at or below the
        # compacted revision, which loading skips and the next compaction deletes. The other
        # order could leave a gap. The rows go in chunks, each its own call on the writer
        # thread, so that commits queued meanwhile wait for one chunk only.
        oldest = await self._in_writer(self._compact_disk, compacted)
        while oldest is not None and oldest <= compacted:
            upto = min(oldest + _DELETE_CHUNK - 1, compacted)
            await self._in_writer(self._delete_log, upto)
            oldest = upto + 1

    def _compact_disk(self, revision: int) -> int | None:
        """The disk side of compaction begins: records the compacted revision; returns the
        oldest revision still in the log (the rows up to the compacted one go next)."""
        db = self._db
        assert db is not None
        db.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'compacted'", (revision,))
        self._pre_compact_counts = self._writer_page_counts()
        oldest: int | None = db.execute("SELECT min(revision) FROM log").fetchone()[0]
        return oldest

    def _delete_log(self, upto: int) -> None:
        db = self._db
        assert db is not None
        db.execute("DELETE FROM log WHERE revision <= ?", (upto,))

    # -- giving space back -------------------------------------------------------------

    async def reclaim(self, *, only_if_worthwhile: bool = False, keep: int = _VACUUM_KEEP_FREE) -> int:
        """Gives the file's free pages back to the file system; returns how many went.

        Runs incremental vacuum in steps on the writer thread, each sized to take about
        ``_VACUUM_STEP_SECONDS``, with the commits that queued up running between steps:
        a write never waits for more than one step. The file shrinks when the background
        checkpoint has copied a step's pages back (woken after each step).
        ``only_if_worthwhile``: do nothing unless much of the file is free beyond ``keep``
        (what the compactor asks after each compaction: a few free pages are reused soon
        anyway). ``keep``: free pages to leave for the writes to come.
        """
        self._check_usable()
        if not self._incremental:
            return 0
        pages, free = await self._in_writer(self._writer_page_counts)
        spare = free - keep
        if only_if_worthwhile and not (spare > _VACUUM_MIN_FREE and spare * 4 > pages):
            return 0
        freed = 0
        lo, hi = _VACUUM_STEP_PAGES
        while free > keep and self._state is _State.OPEN:
            step = min(self._vacuum_step_pages, free - keep)
            left, took = await self._in_writer(self._vacuum_step, step)
            freed += max(free - left, 0)
            self._checkpoint_wanted.set()
            if left >= free:  # nothing moved (another round raced us, or SQLite refused): stop
                break
            free = left
            # Aim the next step at the time budget, growing at most twofold at a time.
            if step == self._vacuum_step_pages:
                wanted = int(step * _VACUUM_STEP_SECONDS / max(took, 1e-5))
                self._vacuum_step_pages = max(lo, min(hi, wanted, step * 2))
            await asyncio.sleep(_VACUUM_PAUSE)
        return freed

    def _writer_page_counts(self) -> tuple[int, int]:
        db = self._db
        assert db is not None
        pages, free = db.execute("SELECT * FROM pragma_page_count(), pragma_freelist_count()").fetchone()
        return int(pages), int(free)

    def _vacuum_step(self, pages: int) -> tuple[int, float]:
        """Frees up to ``pages`` pages; returns (free pages left, seconds it took)."""
        db = self._db
        assert db is not None
        started = time.perf_counter()
        # executescript, not execute: the pragma returns one (column-less) row per page it
        # frees, and the cursor of execute() steps the statement only once, so it would free
        # a single page whatever the limit. executescript steps it to the end in one call.
        db.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
        took = time.perf_counter() - started
        return int(db.execute("PRAGMA freelist_count").fetchone()[0]), took

    def _retention_target(self) -> int:
        """The revision to compact to: older than the window, or beyond the event cap."""
        target = self._revision - self._history_max_events
        cutoff = time.monotonic() - self._history_window
        for at, rev in self._commit_times:
            if at > cutoff:
                break
            target = max(target, rev)
        return min(target, self._revision)

    async def _compact_and_reclaim(self) -> None:
        """One round of the compactor: compact, then give back the free pages writes will not need.

        The giving back runs as a task of its own (one at a time), so that the next rounds,
        which trim the history in memory, are never held up by its steps.
        """
        await self.compact(max(self._retention_target(), self._compacted))
        if not self._incremental or (self._reclaimer is not None and not self._reclaimer.done()):
            return
        pages, free = self._pre_compact_counts
        last = self._last_page_counts
        taken = 0 if last is None else max(0, (last[1] - free) + (pages - last[0]))
        self._reclaimer = asyncio.create_task(self._reclaim_after_compaction(taken),
                                              name="kubelite-store-reclaimer")

    async def _reclaim_after_compaction(self, keep: int) -> None:
        try:
            await self.reclaim(only_if_worthwhile=True, keep=keep)
            self._last_page_counts = await self._in_writer(self._writer_page_counts)
        except Exception as exc:  # the next round tries again; meanwhile free pages are reused
            if self._state is _State.OPEN:
                log.warning("store %s: giving space back failed: %s", self.path, exc)

    async def _compact_loop(self) -> None:
        while self._state is _State.OPEN:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._compact_interval):  # not wait_for: see _watch
                    await self._compact_wanted.wait()
            self._compact_wanted.clear()
            if self._state is not _State.OPEN:
                return
            try:
                await self._compact_and_reclaim()
            except Exception as exc:
                if self._state is not _State.OPEN:
                    return
                self.last_compaction_error = f"{type(exc).__name__}: {exc}"
                log.exception(
                    "store %s: compaction failed, retrying in %.0fs", self.path, self._compact_interval
                )
            else:
                self.last_compaction = time.time()
                self.last_compaction_error = None

    # -- checkpoints -------------------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        """Copies the WAL into the database file from a second connection, off the commit path.

        Done by the writer itself, each checkpoint would hold up the commits queued behind
        it for milliseconds; from here it runs alongside them, and the writer's automatic
        checkpoint finds next to nothing left to do.
        """
        loop = asyncio.get_running_loop()
        while True:
            await self._checkpoint_wanted.wait()
            self._checkpoint_wanted.clear()
            try:
                await loop.run_in_executor(self._checkpoint_executor, self._checkpoint)
            except sqlite3.Error as exc:
                # Nothing is lost: the WAL holds the data and the writer checkpoints itself.
                log.warning("store %s: background checkpoint failed: %s", self.path, exc)
            await asyncio.sleep(_CHECKPOINT_PAUSE)

    def _checkpoint(self) -> None:
        assert self._checkpoint_db is not None
        self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)")
