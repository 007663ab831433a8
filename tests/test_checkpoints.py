"""Overnight renders meet signals, crashes, full disks and twins: the checkpoint folder
survives them and never touches what is not its own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nstvideo import StyleSettings, VideoSettings, stylize
from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.video.names import LOCK, RECORDS, STATE
from nstvideo.errors import InputError, OutputError
from test_video import Interrupt
from videokit import make_clip, probe

S = StyleSettings(size=48, iterations=2)
V = VideoSettings(iterations=1, iterations_first=1)


def interrupted(tmp_path, style, monkeypatch, frames=8, at=5):
    """A clip and an output whose render was interrupted after at-1 frames."""
    src = make_clip(tmp_path / "c.mp4", frames=frames)
    out = tmp_path / "o.mp4"
    counter = Interrupt(monkeypatch, at=at)
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style, out, settings=S, video=V)
    counter.calls, counter.at = 0, None
    return src, out, counter


def test_damaged_frames_are_rendered_again(tmp_path, style_png, monkeypatch):
    """A truncated last frame (power loss) and a damaged earlier one: resume renders from the
    first damaged frame on, and the video has every frame."""
    src, out, counter = interrupted(tmp_path, style_png, monkeypatch)
    folder = checkpoint_dir(out) / "u00000"  # the clip is one shot: one unit
    last = folder / "frame_000003.png"
    last.write_bytes(last.read_bytes()[:50])  # truncated
    rep = stylize(src, style_png, out, settings=S, video=V).video
    assert rep.resumed == 3 and counter.calls == 5 and probe(out)["frames"] == 8

    out2 = tmp_path / "o2.mp4"
    Interrupt(monkeypatch, at=6)
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style_png, out2, settings=S, video=V)
    counter = Interrupt(monkeypatch)
    middle = checkpoint_dir(out2) / "u00000" / "frame_000001.png"
    data = bytearray(middle.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes
    middle.write_bytes(bytes(data))
    (middle.parent / ".frame_000005.abc.partial.png").write_bytes(b"stale")
    rep = stylize(src, style_png, out2, settings=S, video=V).video
    assert rep.resumed == 1 and counter.calls == 7 and probe(out2)["frames"] == 8


def test_restart_never_deletes_a_folder_of_the_users(tmp_path, style_png):
    src = make_clip(tmp_path / "c.mp4", frames=3)
    out = tmp_path / "o.mp4"
    mine = checkpoint_dir(out)
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    for restart in (False, True):
        with pytest.raises(OutputError, match="not an nstvideo checkpoint folder"):
            stylize(src, style_png, out, settings=S, video=V, restart=restart)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    (mine / "holiday.jpg").unlink()
    (mine / "frame_000000.png").write_bytes(b"mine too")  # looks like ours, no state: not ours
    with pytest.raises(OutputError, match="not an nstvideo checkpoint folder"):
        stylize(src, style_png, out, settings=S, video=V, restart=True)
    assert (mine / "frame_000000.png").read_bytes() == b"mine too"


def test_early_failure_leaves_no_checkpoint_folder(tmp_path, style_png, monkeypatch):
    from nstvideo.video import unit as pipeline
    from nstvideo.errors import ModelError

    src = make_clip(tmp_path / "c.mp4", frames=3)
    out = tmp_path / "o.mp4"

    def no_weights(*a, **k):
        raise ModelError("weights cannot be had")
    monkeypatch.setattr(pipeline, "Stylizer", no_weights)
    with pytest.raises(ModelError):
        stylize(src, style_png, out, settings=S, video=V)
    assert not checkpoint_dir(out).exists() and not out.exists()


def test_a_second_render_of_the_same_output_refuses_at_once(tmp_path, style_png, monkeypatch):
    src, out, _ = interrupted(tmp_path, style_png, monkeypatch)
    lock = checkpoint_dir(out) / LOCK
    assert not lock.exists()  # released on the interruption
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        t = time.perf_counter()
        with pytest.raises(OutputError, match=f"another nstvideo \\(PID {sleeper.pid}\\)"):
            stylize(src, style_png, out, settings=S, video=V)
        assert time.perf_counter() - t < 5  # at once, before any work
        assert lock.exists()  # the owner's lock is left alone
    finally:
        sleeper.kill()
        sleeper.wait()
    # its owner is gone: a stale lock is taken over and the render resumes
    rep = stylize(src, style_png, out, settings=S, video=V).video
    assert rep.resumed == 4 and rep.frames == 8


def test_a_replaced_style_image_is_another_render(tmp_path, style_png, style2_png, monkeypatch):
    src, out, _ = interrupted(tmp_path, style_png, monkeypatch)
    shutil.copy(style2_png, style_png)  # same name, other painting
    with pytest.raises(InputError, match="changed: styles"):
        stylize(src, style_png, out, settings=S, video=V)


def test_a_changed_setting_is_named_with_its_values(tmp_path, style_png, monkeypatch):
    """Refused to resume with another setting: the line names it, with the value the render
    was begun with (what to pass to resume it)."""
    src, out, _ = interrupted(tmp_path, style_png, monkeypatch)
    with pytest.raises(InputError, match=r"changed: style\.iterations 2 -> 3, video\.temporal_"
                                         r"weight 1000\.0 -> 50\.0\)"):
        stylize(src, style_png, out, settings=S.replace(iterations=3),
                video=V.replace(temporal_weight=50.0))
    rep = stylize(src, style_png, out, settings=S, video=V).video  # as begun: resumes
    assert rep.resumed == 4 and rep.frames == 8


def test_sigterm_flushes_frames_and_exits_143(tmp_path, style_png):
    """kill (SIGTERM) mid-render: one line, exit 143, every finished frame kept; the same
    command then resumes."""
    src = make_clip(tmp_path / "c.mp4", frames=40)
    out = tmp_path / "o.mp4"
    cmd = [sys.executable, "-m", "nstvideo", "stylize", str(src), style_png, "-o", str(out),
           "--size", "48", "--iterations", "2", "--iterations-first", "2", "--quiet"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = checkpoint_dir(out) / "u00000" / RECORDS
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or
                                      len(records.read_text().splitlines()) < 3):
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nstvideo: error: terminated"), err
    done = len(records.read_text().splitlines())
    assert done >= 3 and len(list(checkpoint_dir(out).glob("u*/frame_*.png"))) == done
    assert (checkpoint_dir(out) / STATE).exists() and not out.exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert probe(out)["frames"] == 40


def test_a_chains_still_reference_is_kept_for_the_last_two_frames_only(tmp_path):
    import numpy as np

    from nstvideo.video.store import UnitStore

    store = UnitStore(tmp_path / "u00000")
    store.open()
    for k in range(4):
        ref = np.full((8, 8, 3), 10 * k, np.uint8)
        store.save_still(k, ref)
        store.save(k, ref)
    assert sorted(p.name for p in store.folder.glob("still_*")) == [
        "still_000002.png", "still_000003.png"]  # a crash before frame 4 is on record needs 3
    assert int(store.still(3)[0, 0, 0]) == 30 and store.still(0) is None
    (store.folder / "still_000003.png").write_bytes(b"damaged")
    assert store.still(3) is None  # read as no reference, not a failed resume
    assert UnitStore(store.folder).open() == 4  # the records are untouched by the stills
    store.finish()
    assert not list(store.folder.glob("still_*"))
