"""CPU work beside the optimization: decoding and optical flow run ahead of it in one thread,
checkpoint writes trail it in another, so that a GPU does not wait for the CPU between frames.

OpenCV and numpy release the GIL for their heavy work (decode, DIS flow, PNG encode), so plain
threads overlap with the device. The queues are short: memory does not grow with the clip.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` in a background thread, up to `depth` items ahead of the consumer.

    An exception raised while producing is re-raised in the consumer at that point; closing
    the returned generator (or an exception in the consumer) stops the producer."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put((None, e))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="nstvideo-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class BackgroundWriter:
    """Runs calls (e.g. checkpoint writes) in order in one thread, at most `depth` pending;
    an error in one is raised by the next `submit` or by `wait`. Use as a context manager:
    leaving it waits for every pending call (also on Ctrl+C), so no finished frame is lost."""

    def __init__(self, depth: int = 2):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nstvideo-writer")
        self._pending: deque[Future] = deque()
        self._depth = max(1, depth)

    def submit(self, fn: Callable, *args) -> None:
        while self._pending and (len(self._pending) >= self._depth or self._pending[0].done()):
            self._pending.popleft().result()  # re-raises the call's exception
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            else:  # finish what was handed over; the first exception is the one to report
                for f in self._pending:
                    f.exception()
                self._pending.clear()
        finally:
            self._pool.shutdown(wait=True)
