"""A run's log (amst_core.runlog): what its workers logged while training it, read from the run's folder.

Two ways to read: the last `tail_bytes` (cut at a line start), or the bytes from `offset`, which is how a page
follows a live run: it asks again with `offset=next_offset`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from amst_core.runlog import log_path
from api.deps import SessionDep, SettingsDep, find_run
from api.schemas import ErrorResponse

router = APIRouter(tags=["runs"])

MAX_PAGE = 1_000_000  # bytes one answer carries at most
Errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (404, 422)}


class LogOut(BaseModel):
    text: str = Field(description="the bytes [offset, next_offset) of the log, decoded as UTF-8 (bad bytes replaced)")
    offset: int = Field(description="where `text` starts in the file")
    next_offset: int = Field(description="where `text` ends: ask again with offset=next_offset to follow the log")
    size: int = Field(description="the file's size now, in bytes (0: nothing logged yet)")
    truncated: bool = Field(description="`text` does not start at the beginning of the file")


@router.get("/runs/{run_id}/logs", response_model=LogOut, responses=Errors)
def get_logs(run_id: str, s: SessionDep, settings: SettingsDep,
             offset: Annotated[int | None, Query(ge=0, le=2**62, description="read from this byte on (at most "
                                                 "1 MB); absent: the tail")] = None,
             tail_bytes: Annotated[int, Query(ge=1, le=MAX_PAGE, description="without offset: how much of the "
                                              "end to return")] = 65536) -> LogOut:
    """The run's log: every attempt's lines (a header per attempt), from its workers."""
    run = find_run(s, run_id)
    return read_log(log_path(settings.run_dir(run.id)), offset, tail_bytes)


def read_log(path: Path, offset: int | None, tail_bytes: int) -> LogOut:
    try:
        f = path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        return LogOut(text="", offset=0, next_offset=0, size=0, truncated=False)
    with f:
        size = os.fstat(f.fileno()).st_size
        start, data = tail(f, size, tail_bytes) if offset is None else page(f, size, offset)
    return LogOut(text=data.decode("utf-8", errors="replace"), offset=start, next_offset=start + len(data),
                  size=size, truncated=start > 0)


def tail(f: BinaryIO, size: int, tail_bytes: int) -> tuple[int, bytes]:
    """The last `tail_bytes`, starting after the first line break in them (a line cut in two is dropped), unless
    they hold no line break at all."""
    start = max(0, size - tail_bytes)
    if start == 0:
        return 0, f.read(size)
    f.seek(start - 1)
    data = f.read(size - start + 1)
    cut = data.find(b"\n")
    if cut < 0 or 0 < cut == len(data) - 1:  # the end of one long line: better part of it than nothing
        return start, data[1:]
    return start + cut, data[cut + 1:]


def page(f: BinaryIO, size: int, offset: int) -> tuple[int, bytes]:
    """At most MAX_PAGE bytes from `offset`; a page cut short by the limit ends at a line break (no character or
    line split between two pages). An offset past the end answers nothing, at the end."""
    start = min(offset, size)
    f.seek(start)
    data = f.read(min(size - start, MAX_PAGE))
    if start + len(data) < size:
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[:cut + 1]
    return start, data
