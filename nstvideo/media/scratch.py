"""Scratch folders that a killed process cannot leave behind for good: each is named with its
machine and process, and the next one made on the machine removes those of dead processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path


def scratch_root() -> Path:
    """Where this user's scratch folders (`scratch_folder`) live: under the system's temporary
    folder (TMPDIR), one per user."""
    uid = os.getuid() if hasattr(os, "getuid") else re.sub(r"\W", "_", os.environ.get(
        "USERNAME", "user"))
    return Path(tempfile.gettempdir()) / f"nstvideo-scratch-{uid}"


@contextlib.contextmanager
def scratch_folder(kind: str):
    """A temporary folder, removed after, named with this machine and process, so that the
    next one made on this machine removes what a killed process left (a Ray worker killed
    mid-task: its unit's frames; a render killed while joining: its cross-fades). Folders of
    live processes, and of other machines or containers sharing the folder, are kept."""
    root = scratch_root()
    root.mkdir(mode=0o700, exist_ok=True)
    host = _host()
    for old in root.glob(f"*-{host}-*"):
        pid = old.name.split("-")[-2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{kind}-{host}-{os.getpid()}-", dir=root) as tmp:
        yield Path(tmp)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would end the process there: keep every folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no such check here: keep its folder
        return True
    return True
