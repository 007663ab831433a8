"""Where the units of a render run: in this process (the default), in local worker processes
(one per GPU, or sharing the CPU cores), or as Ray tasks on a cluster. Every engine calls the
same unit runner (pipeline.UnitRunner); they differ only in where it runs and how a unit's
files reach the render's checkpoint folder. Knows nothing of how a unit is rendered.

An engine is a context manager with `slots` (how many units can run at once) and
`run(job, units, folder, event)`, which returns once every unit is finished in
`folder/uNNNNN`, calling `event(kind, unit, where, detail)` for each frame ('frame', detail:
the worker's PID) and unit ('unit', detail: the runner's report).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import tempfile
from collections import deque
from pathlib import Path

from nstvideo.errors import InputError, NstVideoError, RenderError

RETRIES = 3  # a unit whose worker died is given to a fresh one this many times


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _store(folder: Path, unit, job):
    from nstvideo.video.checkpoint import UNIT, UnitStore

    return UnitStore(Path(folder) / UNIT.format(unit.index), job.keep_frames)


def _runner(job):
    from nstvideo.video.render import UnitRunner

    return UnitRunner(job)


class InProcess:
    """Units one after the other in this process (no extra dependency, no extra memory)."""

    slots = 1

    def run(self, job, units, folder, event) -> None:
        runner = _runner(job)
        where = f"this process ({runner.device})"
        for u in units:
            report = runner.run(u, _store(folder, u, job),
                                on_frame=lambda k, u=u: event("frame", u.index, where, os.getpid()))
            event("unit", u.index, where, report)

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


def _portable(e: BaseException) -> BaseException:
    """An exception that survives pickling: ours as they are, any other as a RenderError."""
    if isinstance(e, NstVideoError):
        return e
    from nstvideo.photos import reason

    return RenderError(f"a worker failed: {reason(e)} (run again with --verbose, and please "
                       "report it)")


def _worker(wid: int, job, threads: int, folder: Path, tasks, events) -> None:
    from nstvideo.terminal import Terminated, _on_sigterm

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops us (SIGTERM) after Ctrl-C
    signal.signal(signal.SIGTERM, _on_sigterm)  # ... and the frames queued for writing are kept
    import torch

    torch.set_num_threads(threads)
    unit = None
    try:
        runner = _runner(job)
        where = f"worker {wid} ({runner.device})"
        while (unit := tasks.recv()) is not None:
            report = runner.run(unit, _store(folder, unit, job),
                                on_frame=lambda k: events.send(("frame", unit.index, where,
                                                                os.getpid())))
            events.send(("unit", unit.index, where, report))
    except (EOFError, Terminated):  # the driver is gone, or stops us
        return
    except BaseException as e:  # noqa: BLE001 - handed to the driver, which says it
        events.send(("error", None if unit is None else unit.index, "", _portable(e)))


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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, job, units, folder, event) -> None:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")  # torch and CUDA do not survive fork
        todo = deque(units)
        tries: dict[int, int] = {}
        workers: dict[int, _Worker] = {}
        places = placements(job.settings.device, self.slots)

        def start(wid: int) -> None:
            device, threads = places[wid]
            task_r, task_w = ctx.Pipe(duplex=False)
            event_r, event_w = ctx.Pipe(duplex=False)
            wjob = dataclasses.replace(job, settings=job.settings.replace(device=device))
            p = ctx.Process(target=_worker, args=(wid, wjob, threads, folder, task_r, event_w),
                            name=f"nstvideo-worker-{wid}", daemon=True)
            p.start()
            task_r.close()  # the worker's ends: theirs alone, so its death closes them
            event_w.close()
            workers[wid] = _Worker(p, task_w, event_r)

        def give(wid: int) -> None:
            w = workers[wid]
            w.unit = todo.popleft() if todo else None
            w.tasks.send(w.unit)

        def lost(wid: int) -> None:
            """The worker died: its unit goes to a fresh one, next in line."""
            w = workers[wid]
            w.process.join(timeout=5)
            unit = w.unit
            tries[unit.index] = tries.get(unit.index, 0) + 1
            if tries[unit.index] > RETRIES:
                raise RenderError(f"unit {unit.index} lost its worker {RETRIES + 1} times (out of "
                                  "memory? killed?): run the same command again to resume")
            todo.appendleft(unit)
            start(wid)
            give(wid)

        ok = False
        try:
            for wid in range(min(self.slots, len(units))):
                start(wid)
                give(wid)
            while any(w.unit is not None for w in workers.values()):
                busy = {id(w.events): wid for wid, w in workers.items() if w.unit is not None}
                for conn in wait([workers[wid].events for wid in busy.values()], timeout=1.0):
                    wid = busy[id(conn)]
                    try:
                        kind, unit, where, detail = conn.recv()
                    except (EOFError, OSError):
                        lost(wid)
                        continue
                    if kind == "error":
                        raise detail
                    event(kind, unit, where, detail)
                    if kind == "unit":
                        give(wid)
            ok = True
        finally:
            self._stop(workers, ok)

    @staticmethod
    def _stop(workers: dict, done: bool) -> None:
        """Done: the idle workers are told to leave. Else (an error, Ctrl-C) they are stopped
        at once, each keeping the frames it finished (SIGTERM, handled)."""
        for w in workers.values():
            with contextlib.suppress(Exception):
                if done:
                    w.tasks.send(None)
                else:
                    w.process.terminate()
        for w in workers.values():
            w.process.join(timeout=30)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)


# -- Ray -------------------------------------------------------------------------------------
_RUNNERS: dict[str, object] = {}  # per Ray worker process: one runner (VGG) per render


def _ray_unit(token: str, job, unit, frames, progress) -> dict:
    """A Ray task: render `unit` in a scratch folder, from the input itself where this node
    sees the driver's (a shared filesystem), else from the frames shipped with the task (PNG,
    lossless); return the unit's files (segments, PNGs, records) for the driver to keep, or
    {'need_frames': True}."""
    import cv2
    import numpy as np
    import torch

    from nstvideo.video.checkpoint import UnitStore

    if frames is None and not job.source.readable():
        return {"need_frames": True}
    if frames is not None:
        frames = [cv2.cvtColor(cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB) for f in frames]

    if token not in _RUNNERS:
        _RUNNERS.clear()
        if not torch.cuda.is_available():
            torch.set_num_threads(1)
        _RUNNERS[token] = _runner(job)
    runner = _RUNNERS[token]
    import ray

    where = f"{ray.util.get_node_ip_address()} ({runner.device})"
    with tempfile.TemporaryDirectory(prefix="nstvideo-unit-") as tmp:
        store = UnitStore(Path(tmp), job.keep_frames)
        report = runner.run(unit, store, frames=frames, on_frame=lambda k: progress.put(
            ("frame", unit.index, where, os.getpid())))
        report["input"] = "read" if frames is None else "shipped"
        return {"files": store.files(), "report": report, "where": where}


class RayEngine:
    """Units as Ray tasks (one GPU each where the cluster has GPUs, else one CPU each). A task
    reads the input itself where its node sees the driver's file (a shared filesystem);
    elsewhere the driver, reading the input once in order, ships the unit's frames through
    the object store. A task returns its unit's files, which the driver keeps. A task whose
    worker died is retried by Ray. `address`: a cluster's ('auto': the one `ray start` set up
    here), or 'local' for a private instance that lives as long as this render."""

    def __init__(self, address: str):
        try:
            import ray
        except ImportError as e:
            raise InputError("--ray needs Ray, an optional extra: pip install "
                             "'nstvideo[ray]' (or run with --workers N on one machine)") from e
        self.ray = ray
        try:
            if address == "local":
                ray.init(num_cpus=cpu_cores(), include_dashboard=False, log_to_driver=False,
                         logging_level="error", configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, logging_level="error",
                         configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            why = str(e).strip().split(". ")[0].splitlines()[0][:150]
            raise InputError(f"no Ray cluster at '{address}' ({why}): start one with 'ray "
                             "start --head', or use --ray local") from e
        res = ray.cluster_resources()
        self.gpus = int(res.get("GPU", 0))
        self.slots = self.gpus or max(1, int(res.get("CPU", 1)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ray.shutdown()

    def run(self, job, units, folder, event) -> None:
        from ray.exceptions import RayError, RayTaskError
        from ray.util.queue import Queue

        from nstvideo.media.writer import encode_image
        from nstvideo.video.plan import Cursor

        ray = self.ray
        task = ray.remote(_ray_unit).options(
            num_gpus=1 if self.gpus else 0, num_cpus=1, max_retries=RETRIES,
            retry_exceptions=False)
        if self.gpus:  # each task sees the one GPU Ray gives it
            job = dataclasses.replace(job, settings=job.settings.replace(device="auto"))
        else:
            job = dataclasses.replace(job, settings=job.settings.replace(device="cpu"))
        token, job_ref = os.urandom(8).hex(), ray.put(job)
        progress = Queue(actor_options={"num_cpus": 0})
        cursor = Cursor(lambda want: job.source.frames(hw=job.hw, decode_from=want),
                        job.video.overlap + 1)
        todo, pending = deque((u, False) for u in units), {}
        try:
            while todo or pending:
                # units to send: without frames first; with them (memory!) a few at a time
                while todo and len(pending) < 2 * self.slots:
                    u, ship = todo.popleft()
                    frames = None if not ship else [
                        encode_image(f, ".png") for _, f in cursor.take(u.begin, u.stop)]
                    pending[task.remote(token, job_ref, u, frames, progress)] = u
                    if ship and len(pending) >= self.slots + 1:
                        break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                self._drain(progress, event)
                for ref in ready:
                    u = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except RayTaskError as e:
                        cause = getattr(e, "cause", None)
                        raise (cause if isinstance(cause, NstVideoError) else _portable(
                            cause or e)) from None
                    except RayError as e:
                        raise RenderError(f"unit {u.index} failed on Ray {RETRIES + 1} times "
                                          f"({type(e).__name__}): run the same command again "
                                          "to resume") from None
                    if out.get("need_frames"):  # that node cannot read the input
                        todo.appendleft((u, True))
                        continue
                    store = _store(folder, u, job)
                    store.adopt(out["files"])
                    if not store.complete:
                        raise RenderError(f"unit {u.index} came back from Ray incomplete: run "
                                          "the same command again to resume")
                    self._drain(progress, event)
                    event("unit", u.index, out["where"], out["report"])
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):
                progress.shutdown()

    @staticmethod
    def _drain(progress, event) -> None:
        n = progress.qsize()
        if n:
            for kind, unit, where, pid in progress.get_nowait_batch(n):
                event(kind, unit, where, pid)
