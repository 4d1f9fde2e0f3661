"""``HostSlots``: at most n holders across processes and threads of one host (flock'd slot files)."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from pathlib import Path

from meshclient.spark.slots import HostSlots


def _hold(slots: HostSlots, log: str, rounds: int) -> None:
    for _ in range(rounds):
        with slots.slot():
            with open(log, "a") as fh:
                fh.write("+\n")
            time.sleep(0.005)
            with open(log, "a") as fh:
                fh.write("-\n")


def test_at_most_n_holders_across_processes_and_threads(tmp_path: Path) -> None:
    slots = HostSlots("testkey", 2, str(tmp_path))
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hold, args=(slots, str(log), 15)) for _ in range(3)]
    threads = [threading.Thread(target=_hold, args=(slots, str(log), 15)) for _ in range(3)]
    for w in [*procs, *threads]:
        w.start()
    for w in [*procs, *threads]:
        w.join(60)
    assert all(p.exitcode == 0 for p in procs)
    depth = peak = 0
    for line in log.read_text().split():
        depth += 1 if line == "+" else -1
        peak = max(peak, depth)
    assert depth == 0 and peak == 2  # the bound, reached (six workers wanted more)


def test_slots_pickle_to_the_same_files(tmp_path: Path) -> None:
    slots = HostSlots("abc123", 3, str(tmp_path))
    copy = pickle.loads(pickle.dumps(slots))
    assert (copy.key, copy.n, copy.directory) == (slots.key, slots.n, slots.directory)
