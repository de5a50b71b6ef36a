"""The sample cache is decoded by several threads (amst_core.data.cache.write_arrays) and written in order: the
same files as one thread writes, undecodable samples in the middle included."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest

from amst_core.data import cache
from amst_core.data.cache import SampleProblem, decode_threads, write_arrays


def extract(entry: int) -> dict[str, np.ndarray]:
    time.sleep(random.Random(entry).uniform(0, 0.004))  # threads finish out of order
    if entry % 7 == 3:
        raise SampleProblem(f"clip{entry}.jpg", "is not a JPEG")
    return {"audio": np.full((4, 3), entry, dtype=np.float16), "visual": np.full((2, 2, 3), entry % 255, np.uint8)}


def written(folder: Path, threads: int) -> tuple[list[int], list[tuple[int, str]], dict[str, np.ndarray]]:
    folder.mkdir()
    done: list[int] = []
    good, bad = write_arrays(folder, list(range(40)), extract, lambda: done.append(1), threads)
    assert len(done) == 40
    return good, [(i, p.problem) for i, p in bad], {k: np.load(folder / f"{k}.npy") for k in ("audio", "visual")}


def test_threads_write_what_one_thread_writes(tmp_path: Path) -> None:
    one = written(tmp_path / "one", 1)
    many = written(tmp_path / "many", 6)
    assert one[0] == many[0] and one[1] == many[1]
    assert [i for i, _ in one[1]] == [3, 10, 17, 24, 31, 38]
    for key in ("audio", "visual"):
        np.testing.assert_array_equal(one[2][key], many[2][key])
    assert many[2]["audio"][:, 0, 0].tolist() == [float(i) for i in many[0]]  # rows in the entries' order


def test_a_failure_in_a_thread_reaches_the_writer(tmp_path: Path) -> None:
    def broken(entry: int) -> dict[str, np.ndarray]:
        if entry == 5:
            raise OSError("disk gone")
        return {"audio": np.zeros(2, np.float16)}

    with pytest.raises(OSError, match="disk gone"):
        write_arrays(tmp_path, list(range(30)), broken, lambda: None, 4)


def test_the_number_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMST_CACHE_THREADS", raising=False)
    assert 1 <= decode_threads() <= 16
    monkeypatch.setenv("AMST_CACHE_THREADS", "3")
    assert decode_threads() == 3
    monkeypatch.setenv("AMST_CACHE_THREADS", "0")
    assert decode_threads() == 1
    monkeypatch.setenv("AMST_CACHE_THREADS", "many")
    with pytest.raises(ValueError, match="AMST_CACHE_THREADS='many' is not a whole number"):
        cache.decode_threads()


def test_processes_of_one_machine_build_a_cache_once_the_others_wait_for_it(tmp_path: Path) -> None:
    """A run's ranks (or two runs of one worker machine) open the same cache at once: one decodes, the others
    wait and read what it built (before, each rank decoded the whole split and all but one threw theirs away)."""
    import subprocess
    import sys

    folder = tmp_path / "samples" / "key"
    log = tmp_path / "builds.log"
    build = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from amst_core.data import cache\n"
        "folder, log = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "def build(tmp):\n"
        "    with log.open('a') as f:\n"
        "        f.write('built\\n')\n"
        "    time.sleep(0.5)\n"
        "    (tmp / 'meta.json').write_text('{}')\n"
        "cache.build_atomically(folder, build)\n"
        "assert (folder / 'meta.json').exists()\n")
    procs = [subprocess.Popen([sys.executable, "-c", build, str(folder), str(log)],
                              cwd=Path(__file__).resolve().parents[2]) for _ in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert log.read_text() == "built\n"
    assert [p.name for p in folder.parent.iterdir()] == ["key"]  # nothing else left beside the cache
