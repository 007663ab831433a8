"""A folder of photos picks up where it stopped: the same command run again after an
interruption, or after photos were added, paints only what is not painted yet; other settings
do not take an earlier run's outputs for theirs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

import nstvideo.photos
from conftest import content_array, write_rgb
from nstvideo import StyleSettings, stylize
from nstvideo.cli import app
from nstvideo.errors import OutputError
from nstvideo.record import FOLDER_RECORD

S = StyleSettings(size=32, iterations=2)


def photos(folder, names):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        write_rgb(folder / name, np.roll(content_array(), 7 * i, axis=1))
    return folder


def test_an_interrupted_folder_resumes_at_its_next_photo(tmp_path, style_png, monkeypatch):
    folder = photos(tmp_path / "holiday", ["a.png", "b.png", "c.png"])
    out = tmp_path / "painted"
    real, calls = nstvideo.photos.write_image, []

    def interrupted(path, *a, **k):  # Ctrl-C while the second photo is being written
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, *a, **k)

    monkeypatch.setattr(nstvideo.photos, "write_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stylize(folder, style_png, out, settings=S)
    monkeypatch.setattr(nstvideo.photos, "write_image", real)
    first = (out / "a.png").read_bytes()
    rep = stylize(folder, style_png, out, settings=S)  # the same call again: no --overwrite
    assert [p.name for p in rep.skipped] == ["a.png"]
    assert sorted(p.name for p in rep.written) == ["b.png", "c.png"]
    assert (out / "a.png").read_bytes() == first  # not painted twice
    assert (out / FOLDER_RECORD).exists() and not rep.failed


def test_a_grown_folder_paints_only_its_new_and_changed_photos(tmp_path, style_png):
    folder = photos(tmp_path / "roll", ["1.png", "2.png"])
    out = tmp_path / "roll_painted"
    assert len(stylize(folder, style_png, out, settings=S).written) == 2
    write_rgb(folder / "3.png", content_array())  # a photo added since
    os.utime(folder / "1.png", ns=(10**18, 10**18))  # one edited since (another time)
    rep = stylize(folder, style_png, out, settings=S)
    assert sorted(p.name for p in rep.written) == ["1.png", "3.png"]
    assert [p.name for p in rep.skipped] == ["2.png"]
    r = CliRunner().invoke(app, ["stylize", str(folder), style_png, "-o", str(out), "--size",
                                 "32", "--iterations", "2"])
    assert r.exit_code == 0 and "nothing to do: the 3 photos were painted" in r.stderr, r.stderr
    with pytest.raises(OutputError, match="not painted there with these settings"):
        stylize(folder, style_png, out, settings=S.replace(iterations=3))
    rep = stylize(folder, style_png, out, settings=S.replace(iterations=3), overwrite=True)
    assert len(rep.written) == 3 and not rep.skipped


def test_a_file_of_the_users_in_the_output_is_still_not_overwritten(tmp_path, style_png):
    folder = photos(tmp_path / "f", ["a.png", "b.png"])
    out = tmp_path / "o"
    stylize(folder, style_png, out, settings=S)
    (out / FOLDER_RECORD).unlink()  # no record: nothing there is known to be ours
    with pytest.raises(OutputError, match="already holds 2 of the outputs"):
        stylize(folder, style_png, out, settings=S)


def test_a_second_run_writing_the_same_photo_or_folder_refuses(tmp_path, style_png):
    """Two identical photo (or folder) renders at once: the second refuses at once, writes
    nothing, and leaves the first's lock; once its owner is gone the lock is taken over."""
    import json
    import subprocess
    import sys

    src = write_rgb(tmp_path / "p.png", content_array())
    folder = tmp_path / "holiday"
    photos(folder, ["a.png"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = json.dumps({"pid": sleeper.pid, "host": os.uname().nodename})
    try:
        for out, source in ((tmp_path / "o.png", src), (tmp_path / "out", folder)):
            lock = out.parent / f".{out.name}.nstvideo-lock"
            lock.write_text(owner)
            with pytest.raises(OutputError, match=f"another nstvideo \\(PID {sleeper.pid}\\)"):
                stylize(source, style_png, out, settings=S)
            assert lock.exists() and not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert stylize(src, style_png, tmp_path / "o.png", settings=S).ok  # stale: taken over
    assert stylize(folder, style_png, tmp_path / "out", settings=S).ok
    assert not list(tmp_path.glob(".*nstvideo-lock"))  # and released after
