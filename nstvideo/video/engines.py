"""Where the units of a render run: in this process (the default) or in local worker processes
(one per GPU, or sharing the CPU cores); Ray tasks on a cluster are nstvideo.video.cluster.
Every engine runs the job's own unit runner (`job.runner(job)`, one per process) on the units
it is handed; engines differ only in where it runs and how a unit's files reach the render
folder, and know nothing of methods, plans or what is inside a unit's store.

An engine (the `Engine` protocol) is a context manager with `slots` (how many units can run
at once) and `run(job, units, folder, event)`, which returns once every unit is finished in
its store in `folder`, calling `event(Event)` for each frame and unit.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
from collections import deque
from pathlib import Path
from typing import NamedTuple, Protocol

from nstvideo.errors import NstVideoError, RenderError, reason
from nstvideo.video.job import Job
from nstvideo.video.store import UnitStore, unit_store

RETRIES = 3  # a unit whose worker died is given to a fresh one this many times


class Event(NamedTuple):
    """What an engine tells of a render: a frame finished ('frame', detail: the PID of the
    process that rendered it), a unit finished ('unit', detail: its runner's report), or, from
    a worker, a failure ('error', detail: the exception)."""

    kind: str
    unit: int | None
    where: str
    detail: object = None


class Engine(Protocol):
    slots: int  # units it runs at once
    threads: int  # torch threads a unit gets on it on a CPU, unless the job says otherwise

    def run(self, job: Job, units: list, folder: Path, event) -> None: ...

    def __enter__(self) -> "Engine": ...

    def __exit__(self, *exc) -> None: ...


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_unit(runner, unit, store: UnitStore, where: str, send) -> None:
    """Run one unit, telling `send` of each frame and then of the unit."""
    report = runner.run(unit, store, on_frame=lambda k: send(
        Event("frame", unit.index, where, os.getpid())))
    send(Event("unit", unit.index, where, report))


def portable(e: BaseException) -> BaseException:
    """An exception that survives pickling: ours as they are, any other as a RenderError."""
    if isinstance(e, NstVideoError):
        return e
    return RenderError(f"a worker failed: {reason(e)} (run again with --verbose, and please "
                       "report it)")


class InProcess:
    """Units one after the other in this process (no extra dependency, no extra memory)."""

    slots = 1

    @property
    def threads(self) -> int:
        import torch

        return torch.get_num_threads()

    def run(self, job: Job, units, folder: Path, event) -> None:
        runner = job.runner(job)
        where = f"this process ({runner.device})"
        for u in units:
            run_unit(runner, u, unit_store(folder, u.index, job.keep_frames), where, event)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def placements(device: str, workers: int) -> list[tuple[str, int]]:
    """(device, torch threads) of each local worker: one GPU each where there are GPUs (they
    share them round-robin when there are more workers), else the CPU cores shared out."""
    import torch

    from nstvideo.style.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is not None and device not in ("auto", "cuda"):
            return [(str(dev), 1)] * workers  # asked for one GPU: all on it
        count = max(1, torch.cuda.device_count())
        return [(f"cuda:{i % count}", 1) for i in range(workers)]
    return [(dev.type, max(1, cpu_cores() // workers))] * workers


def _die_with_parent() -> None:
    """Linux: this process is killed when the driver dies, whatever kills it (kill -9
    included), so no orphan keeps writing into a render that a rerun resumes."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker(wid: int, job: Job, threads: int, folder: Path, tasks, events) -> None:
    from nstvideo.terminal import Terminated, on_sigterm

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops us (SIGTERM) after Ctrl-C
    signal.signal(signal.SIGTERM, on_sigterm)  # ... and the frames queued for writing are kept
    import torch

    torch.set_num_threads(threads)  # the unit runner uses the job's own, where it has one
    unit = None
    try:
        runner = job.runner(job)
        where = f"worker {wid} ({runner.device})"
        while (unit := tasks.recv()) is not None:
            run_unit(runner, unit, unit_store(folder, unit.index, job.keep_frames), where,
                     events.send)
    except (EOFError, Terminated):  # the driver is gone, or stops us
        return
    except BaseException as e:  # noqa: BLE001 - handed to the driver, which says it
        events.send(Event("error", None if unit is None else unit.index, "", portable(e)))


@dataclasses.dataclass
class _Worker:
    process: object
    tasks: object  # the driver's end of the pipe of units to the worker
    events: object  # the driver's end of the pipe of events from the worker
    unit: object = None  # the unit it renders, if any


class LocalPool:
    """`workers` processes on this machine, each taking the next unit in order (so each one
    reads the source forward). A worker that dies has its unit given to a fresh one, which
    continues after the unit's last finished frame. Each worker talks to the driver through
    pipes of its own: a worker killed mid-message takes no lock and no other worker with it."""

    def __init__(self, workers: int):
        self.slots = workers
        self.threads = max(1, cpu_cores() // workers)  # as placements() shares them out
        self._workers: dict[int, _Worker] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, job: Job, units, folder: Path, event) -> None:
        import multiprocessing as mp

        self._ctx = mp.get_context("spawn")  # torch and CUDA do not survive fork
        self._job, self._folder, self._workers = job, folder, {}
        self._places = placements(job.settings.device, self.slots)
        self._todo, self._tries = deque(units), {}
        ok = False
        try:
            for wid in range(min(self.slots, len(units))):
                self._start(wid)
                self._give(wid)
            while any(w.unit is not None for w in self._workers.values()):
                self._listen(event)
            ok = True
        finally:
            self._stop(ok)

    def _start(self, wid: int) -> None:
        device, threads = self._places[wid]
        task_r, task_w = self._ctx.Pipe(duplex=False)
        event_r, event_w = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(target=_worker, args=(wid, self._job.on(device), threads,
                                                    self._folder, task_r, event_w),
                              name=f"nstvideo-worker-{wid}", daemon=True)
        p.start()
        task_r.close()  # the worker's ends: theirs alone, so its death closes them
        event_w.close()
        self._workers[wid] = _Worker(p, task_w, event_r)

    def _give(self, wid: int) -> None:
        w = self._workers[wid]
        w.unit = self._todo.popleft() if self._todo else None
        w.tasks.send(w.unit)

    def _listen(self, event) -> None:
        """Wait (up to a second) for the busy workers' events and pass them on."""
        from multiprocessing.connection import wait

        busy = {id(w.events): wid for wid, w in self._workers.items() if w.unit is not None}
        for conn in wait([self._workers[wid].events for wid in busy.values()], timeout=1.0):
            wid = busy[id(conn)]
            try:
                e = Event(*conn.recv())
            except (EOFError, OSError):
                self._lost(wid)
                continue
            if e.kind == "error":
                raise e.detail
            event(e)
            if e.kind == "unit":
                self._give(wid)

    def _lost(self, wid: int) -> None:
        """The worker died: its unit goes to a fresh one, next in line."""
        w = self._workers[wid]
        w.process.join(timeout=5)
        unit = w.unit
        self._tries[unit.index] = self._tries.get(unit.index, 0) + 1
        if self._tries[unit.index] > RETRIES:
            raise RenderError(f"unit {unit.index} lost its worker {RETRIES + 1} times (out of "
                              "memory? killed?): run the same command again to resume")
        self._todo.appendleft(unit)
        self._start(wid)
        self._give(wid)

    def _stop(self, done: bool) -> None:
        """Done: the idle workers are told to leave. Else (an error, Ctrl-C) they are stopped
        at once, each keeping the frames it finished (SIGTERM, handled)."""
        workers = self._workers.values()
        for w in workers:
            with contextlib.suppress(Exception):
                if done:
                    w.tasks.send(None)
                else:
                    w.process.terminate()
        for w in workers:
            w.process.join(timeout=30)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
