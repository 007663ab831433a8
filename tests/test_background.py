"""The threads beside the optimization: read-ahead and trailing writes keep order, hand errors
over, and stop when the consumer stops."""

import threading
import time

import pytest

from nstvideo.video.background import BackgroundWriter, prefetch


def counted(n, log):
    """0..n-1, noting each item in `log` as it is made."""
    for i in range(n):
        log.append(i)
        yield i


def test_prefetch_keeps_order_and_runs_in_another_thread():
    threads = []

    def items():
        for i in range(20):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=3)) == list(range(20))
    assert set(threads) == {"nstvideo-prefetch"}


def test_prefetch_runs_ahead_by_at_most_depth():
    produced = []
    it = prefetch(counted(100, produced), depth=2)
    assert next(it) == 0
    deadline = time.monotonic() + 10
    while len(produced) < 4 and time.monotonic() < deadline:  # let the producer fill the queue
        time.sleep(0.01)
    time.sleep(0.2)  # ...and give it the chance to overrun it
    # one item consumed, `depth` queued, and one more made and waiting to be queued
    assert len(produced) == 4
    it.close()


def test_prefetch_hands_over_the_producers_error():
    def items():
        yield 1
        raise ValueError("bad frame 2")

    it = prefetch(items())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad frame 2"):
        next(it)


def test_closing_the_consumer_stops_the_producer():
    produced = []
    it = prefetch(counted(10_000, produced), depth=1)
    next(it)
    it.close()
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 4
    assert not any(t.name == "nstvideo-prefetch" for t in threading.enumerate())


def test_writer_runs_calls_in_order_and_waits_for_all():
    done = []

    def slow_append(i):
        time.sleep(0.01)
        done.append(i)

    with BackgroundWriter(depth=2) as w:
        for i in range(10):
            w.submit(slow_append, i)
    assert done == list(range(10))


def test_writer_raises_a_failed_call_and_still_finishes_the_others_on_error():
    done = []

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with BackgroundWriter(depth=4) as w:
            w.submit(fail)
            w.wait()
    with pytest.raises(KeyboardInterrupt):
        with BackgroundWriter(depth=4) as w:
            w.submit(lambda: (time.sleep(0.05), done.append("saved")))
            raise KeyboardInterrupt
    assert done == ["saved"]  # a frame handed over before Ctrl+C is still written
