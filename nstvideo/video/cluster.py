"""The Ray engine: the units of a render as Ray tasks on a cluster (one GPU each where it has
GPUs, else the job's threads' worth of CPUs). A task reads the input itself where its node
sees the driver's file (a shared filesystem); elsewhere the driver, reading the input once in
order, ships the unit's frames through the object store. A task renders in a scratch folder
and returns its unit's files, which the driver keeps: no shared filesystem is needed. Ray is
an optional extra, imported only here. Knows nothing of methods or plans (see engines.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import deque
from pathlib import Path

from nstvideo.errors import InputError, ModelError, NstVideoError, RenderError
from nstvideo.video.engines import RETRIES, Event, cpu_cores, portable
from nstvideo.media.writer import write_file
from nstvideo.video.job import Job
from nstvideo.video.names import LATEST
from nstvideo.video.store import UnitStore, unit_store

CONNECT_SECONDS = 30.0  # a cluster address that does not answer within this is refused
RAY_PORT = 6379  # `ray start --head`'s default port, where an address names none
_RUNNERS: dict[str, object] = {}  # per Ray worker process: one runner (VGG) per render


def _task(token: str, job: Job, unit, frames, progress) -> dict:
    """A Ray task: render `unit` in a scratch folder, from the input itself where this node
    sees the driver's (a shared filesystem), else from the frames shipped with the task (PNG,
    lossless); return the unit's files (segments, PNGs, records) for the driver to keep, or
    {'need_frames': True}."""
    import ray
    import torch

    from nstvideo.media.scratch import scratch_folder
    from nstvideo.media.writer import decode_frame

    if frames is None and not job.source.readable():
        return {"need_frames": True}
    if frames is not None:
        frames = [decode_frame(f) for f in frames]
    if token not in _RUNNERS:
        _RUNNERS.clear()
        if not torch.cuda.is_available():
            torch.set_num_threads(1)  # the unit runner uses the job's own, where it has one
        _RUNNERS[token] = job.runner(job)
    runner = _RUNNERS[token]
    where = f"{ray.util.get_node_ip_address()} ({runner.device})"
    with scratch_folder("unit") as tmp:  # a worker killed here leaves it to the next task
        store = UnitStore(tmp, job.keep_frames)
        report = runner.run(unit, store, frames=frames, on_frame=lambda k: progress.put(
            Event("frame", unit.index, where, os.getpid())))
        report["input"] = "read" if frames is None else "shipped"
        report["process"] = (os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"))
        return {"files": store.files(), "report": report, "where": where}


def check_address(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Refuse, in one line, a cluster address nothing answers at (a mistyped address would
    otherwise keep Ray retrying for many minutes): nothing listening, or a host that does not
    answer within `timeout` (ModelError: the compute cannot be had), or an address that is not
    HOST[:PORT] (InputError)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host:
        host, port = port, str(RAY_PORT)
    hint = "start one there with 'ray start --head', or use --ray local"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except ValueError as e:
        raise InputError(f"--ray {address} is not an address: give HOST:PORT (e.g. "
                         f"127.0.0.1:{RAY_PORT}), auto or local") from e
    except socket.timeout as e:
        raise ModelError(f"no Ray cluster at {address} (no answer in {timeout:g} s): {hint}") \
            from e
    except OSError as e:
        raise ModelError(f"no Ray cluster at {address} ({e.strerror or e}): {hint}") from e


class RayEngine:
    """Units as Ray tasks. `address`: a cluster's (HOST:PORT; 'auto': the one `ray start` set
    up here), or 'local' for a private instance that lives as long as this render; where this
    process has started Ray itself (`ray.init` in a notebook), that instance, left running.
    A task whose worker died is retried by Ray."""

    def __init__(self, address: str):
        try:
            import ray
        except ImportError as e:
            raise InputError("--ray needs Ray, an optional extra: pip install "
                             "'nstvideo[ray]' (or run with --workers N on one machine)") from e
        self.ray = ray
        options = dict(log_to_driver=False, logging_level="error", configure_logging=False)
        self.owned = not ray.is_initialized()  # Ray started by the caller: used, left running
        try:
            if not self.owned:
                pass
            elif address == "local":
                ray.init(num_cpus=cpu_cores(), include_dashboard=False, **options)
            else:
                if address != "auto":
                    check_address(address)
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            why = str(e).strip().split(". ")[0].splitlines()[0][:150]
            raise InputError(f"no Ray cluster at '{address}' ({why}): start one with 'ray "
                             "start --head', or use --ray local") from e
        res = ray.cluster_resources()
        self.gpus = int(res.get("GPU", 0))
        self.slots = self.gpus or max(1, int(res.get("CPU", 1)))
        self.threads = 1  # a task asks for one CPU, unless the job fixes more

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.owned:
            self.ray.shutdown()

    def run(self, job: Job, units, folder: Path, event) -> None:
        from ray.util.queue import Queue

        from nstvideo.media.writer import encode_image

        ray = self.ray
        cpus = 1 if self.gpus else max(1, min(job.threads or 1, self.slots))
        # a GPU task in a process of its own (max_calls=1, which Ray takes only from the
        # decorator): a process's CUDA stays on the GPU it started on, so a reused worker
        # would render every later unit there, beside another task, while a GPU idles
        remote = ray.remote(num_gpus=1, max_calls=1)(_task) if self.gpus else ray.remote(_task)
        task = remote.options(num_cpus=cpus, max_retries=RETRIES, retry_exceptions=False)
        job = job.on("auto" if self.gpus else "cpu")  # a task sees the one GPU Ray gives it
        token, job_ref = os.urandom(8).hex(), ray.put(job)
        progress = Queue(actor_options={"num_cpus": 0})
        cursor, slots = job.cursor(), max(1, self.slots // cpus)
        todo, pending = deque((u, False) for u in units), {}
        try:
            while todo or pending:
                # units to send: without frames first; with them (memory!) a few at a time
                while todo and len(pending) < 2 * slots:
                    u, ship = todo.popleft()
                    frames = None if not ship else [
                        encode_image(f, ".png") for _, f in cursor.take(u.begin, u.stop)]
                    pending[task.remote(token, job_ref, u, frames, progress)] = u
                    if ship and len(pending) >= slots + 1:
                        break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                self._drain(progress, event)
                for ref in ready:
                    u = pending.pop(ref)
                    out = self._result(ref, u)
                    if out.get("need_frames"):  # that node cannot read the input
                        todo.appendleft((u, True))
                        continue
                    self._keep(out, u, folder, job)
                    self._drain(progress, event)
                    event(Event("unit", u.index, out["where"], out["report"]))
        finally:
            self._cancel(pending, progress)

    def _result(self, ref, unit) -> dict:
        from ray.exceptions import RayError, RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, NstVideoError) else portable(cause or e)) \
                from None
        except RayError as e:
            raise RenderError(f"unit {unit.index} failed on Ray {RETRIES + 1} times "
                              f"({type(e).__name__}): run the same command again to "
                              "resume") from None

    @staticmethod
    def _keep(out: dict, unit, folder: Path, job: Job) -> None:
        store = unit_store(folder, unit.index, job.keep_frames)
        store.adopt(out["files"])
        if not store.complete:
            raise RenderError(f"unit {unit.index} came back from Ray incomplete: run the same "
                              "command again to resume")
        last = store.frame_path(store.done() - 1)  # (a unit keeps its last frame's PNG)
        if last.exists():  # the render's latest.png: a task's own is in its scratch folder
            write_file(folder / LATEST, last.read_bytes())

    def _cancel(self, pending: dict, progress) -> None:
        for ref in pending:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):
            progress.shutdown()

    @staticmethod
    def _drain(progress, event) -> None:
        n = progress.qsize()
        if n:
            for e in progress.get_nowait_batch(n):
                event(Event(*e))
