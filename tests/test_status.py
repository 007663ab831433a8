"""`nstvideo status`: the state of a render from its folder alone, read-only; a running render
read from another process, a stopped one, a finished one, and paths that are no render."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner
from test_video import Interrupt
from videokit import make_clip, probe, read_frames

from nstvideo import render_status, stylize
from nstvideo.cli import app
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.video.checkpoint import checkpoint_dir

S = StyleSettings(size=40)
V = VideoSettings(iterations=2, iterations_first=3)
runner = CliRunner()


def snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


def test_a_stopped_render_says_what_is_done_and_how_to_resume(tmp_path, style_png,
                                                              monkeypatch):
    src = make_clip(tmp_path / "c.mp4", frames=9)
    out = tmp_path / "c_monet.mp4"
    counter = Interrupt(monkeypatch, at=5)
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style_png, out, settings=S, video=V)
    folder = checkpoint_dir(out)
    before = snapshot(folder)
    st = render_status(out)
    assert snapshot(folder) == before  # read-only: nothing written, nothing touched
    assert st.state == "stopped" and st.frames_done == 4 and st.frames_total == 9
    assert st.units_total == 1 and st.units_done == 0 and st.pid is None
    assert "--size 40" in st.settings and st.last_frame and st.resume
    import cv2
    shown = cv2.imread(st.latest)  # the newest painted frame, at one known path
    assert st.latest.endswith("latest.png") and shown.shape == (30, 40, 3)
    assert render_status(folder).frames_done == 4  # its folder names it too
    r = runner.invoke(app, ["status", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["frames_done"] == 4
    text = runner.invoke(app, ["status", str(out)]).output
    assert "stopped" in text and "4 of 9 frames" in text and "resume:" in text
    counter.calls, counter.at = 0, None
    stylize(src, style_png, out, settings=S, video=V)
    assert render_status(out).state == "finished"


def test_a_running_render_is_read_from_another_process(tmp_path, style_png):
    """A render in a process of its own, read many times while it runs: running, its PID
    and engine, frames growing; the render finishes whole, its frames those of the same
    seeded render left alone."""
    src = make_clip(tmp_path / "c.mp4", frames=12)
    out, alone = tmp_path / "run.mp4", tmp_path / "alone.mp4"

    def cmd(o):
        return [sys.executable, "-m", "nstvideo", "stylize", str(src), style_png, "-o", str(o),
                "--size", "48", "--iterations", "6", "--seed", "0", "--threads", "1", "-q"]
    subprocess.run(cmd(alone), check=True)
    proc = subprocess.Popen(cmd(out))
    seen = []
    try:
        while proc.poll() is None:
            st = render_status(out)
            if st.state == "running":
                seen.append((st.pid, st.engine, st.frames_done, st.resume))
            time.sleep(0.2)
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == 0 and seen
    assert all(pid == proc.pid and engine == "this process" for pid, engine, _, _ in seen)
    assert seen[-1][3].startswith("nstvideo stylize")  # the command that resumes it
    done = [d for _, _, d, _ in seen]
    assert done == sorted(done) and done[-1] > 0
    assert probe(out)["frames"] == 12 and render_status(out).state == "finished"
    assert np.array_equal(np.stack(read_frames(out)), np.stack(read_frames(alone)))


def test_paths_that_are_no_render(tmp_path):
    assert render_status(tmp_path / "none.mp4").state == "not started"
    r = runner.invoke(app, ["status", str(tmp_path / "no" / "such.mp4")])
    assert r.exit_code == 2 and "no such output" in r.output
    fake = tmp_path / "x.mp4.frames"
    fake.mkdir()
    (fake / "mine.txt").write_text("a user's folder")
    r = runner.invoke(app, ["status", str(tmp_path / "x.mp4")])
    assert r.exit_code == 2 and "not an nstvideo render folder" in r.output
