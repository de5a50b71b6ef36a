"""A run's own log: everything logged for one run, kept in its folder (`logs/output.log`) and served by the API.

The worker attaches a RunLogHandler for the duration of an attempt. It accepts only records from the threads
that belong to that run (the training thread and the run's watcher), so two runs in one process, or the
worker's other threads, never mix into one file. Each attempt appends a header line; the file is capped, so a
chatty run cannot fill the artifacts disk.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

LOG_FILE = Path("logs") / "output.log"
MAX_LOG_BYTES = 20 * 2**20
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOGGERS = ("amst", "amst_core")  # the service's loggers ("amst.engine", "amst.worker", ...) and the library's

_levels_lock = threading.Lock()
_active = 0  # handlers attached now; the loggers' levels are restored when the last one goes
_saved_levels: dict[str, int] = {}


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG_FILE


def last_lines(run_dir: Path, count: int = 6, width: int = 200, window: int = 64 * 1024) -> list[str]:
    """The last lines of a run's log since its latest attempt header (each cut to `width`): what a worker quotes
    when that attempt's training process died (a native crash leaves its Python stack there, faulthandler)."""
    try:
        with log_path(run_dir).open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - window))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Extension modules:")]
    headers = [i for i, line in enumerate(lines) if line.startswith("--- attempt ")]
    lines = lines[headers[-1] + 1:] if headers else lines
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
    # A native crash's stack lists the innermost frame first: quote its start, not the outermost frames.
    lines = lines[fatal[-1]:fatal[-1] + count] if fatal else lines[-count:]
    return [line if len(line) <= width else line[:width] + " ..." for line in lines]


def utc_formatter() -> logging.Formatter:
    formatter = logging.Formatter(LINE_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    formatter.converter = time.gmtime  # one clock for every worker: the header says UTC
    return formatter


class RunLogHandler(logging.Handler):
    """Appends the records of the given threads to a file, up to `max_bytes` (then one 'log truncated' line)."""

    def __init__(self, path: Path, threads: set[int] | None = None, max_bytes: int = MAX_LOG_BYTES):
        super().__init__(logging.DEBUG)
        self.path, self.max_bytes = Path(path), max_bytes
        self.threads = set(threads) if threads is not None else {threading.get_ident()}
        self.setFormatter(utc_formatter())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.note = f"--- log truncated: it reached {max_bytes} bytes ---\n".encode()
        self.file = self.path.open("ab", buffering=0)  # each line reaches the file at once: the API tails it
        self.size = self.file.tell()
        self.full = self.size + len(self.note) >= max_bytes or self.ends_with_note()

    def ends_with_note(self) -> bool:
        """An earlier attempt filled the log: a later one adds nothing (not even a second note)."""
        with self.path.open("rb") as f:
            f.seek(max(0, self.size - len(self.note)))
            return f.read() == self.note

    def add_thread(self, ident: int | None) -> None:
        if ident is not None:
            self.threads.add(ident)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread in self.threads and super().filter(record)

    def write_line(self, line: str) -> None:
        """One line, unless the cap is reached: then a last line says so and nothing more is written."""
        if self.full:
            return
        data = (line.rstrip("\n") + "\n").encode("utf-8", errors="replace")
        if self.size + len(data) + len(self.note) > self.max_bytes:  # room is kept for the note: the cap holds
            self.full = True
            data = self.note
        try:
            self.file.write(data)
        except OSError:  # a full or vanished disk: the run goes on without its log
            self.full = True
            return
        self.size += len(data)

    def header(self, attempt: int, worker_id: str, device: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        with self.lock:  # type: ignore[union-attr]
            self.write_line(f"--- attempt {attempt} on worker {worker_id} ({device}) at {now} ---")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with self.lock, contextlib.suppress(OSError):  # type: ignore[union-attr]
            self.file.close()
        super().close()


def attach(handler: RunLogHandler) -> None:
    """Route the service's loggers to `handler`, at INFO at least (the worker's root may say WARNING)."""
    global _active
    with _levels_lock:
        if _active == 0:
            for name in LOGGERS:
                logger = logging.getLogger(name)
                _saved_levels[name] = logger.level
                if not logger.isEnabledFor(logging.INFO):
                    logger.setLevel(logging.INFO)
        _active += 1
        for name in LOGGERS:
            logging.getLogger(name).addHandler(handler)


def detach(handler: RunLogHandler) -> None:
    global _active
    with _levels_lock:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        _active -= 1
        if _active == 0:
            for name, level in _saved_levels.items():
                logging.getLogger(name).setLevel(level)
            _saved_levels.clear()
    handler.close()
