"""Scratch folders that a killed process cannot leave behind for good: each is named with its
machine and process, and the next one made on the machine removes those of dead processes.
And locks, by the same rule: a lock file holds its process's PID and machine; one left by a
dead process is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

from nstvideo.errors import OutputError


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
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{kind}-{host}-{os.getpid()}-", dir=root) as tmp:
        yield Path(tmp)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def alive(pid: int) -> bool:
    """Whether process `pid` of this machine lives (where that cannot be told: yes)."""
    if os.name == "nt":  # os.kill would end the process there: keep every folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no such check here: keep its folder
        return True
    return True


def take_lock(path: Path, what: str) -> None:
    """Create the lock file `path` for this process, or refuse in one line (OutputError) while
    a live process holds it (`what`: what that process is writing). A lock of a dead process
    on this machine is taken over; one of another machine is respected."""
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text())
                pid, host = int(owner["pid"]), owner.get("host")
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = None, None  # half-written by a process that died
            if pid is not None and (host != me["host"] or alive(pid)):
                where = "" if host == me["host"] else f" on {host}"
                raise OutputError(f"another nstvideo (PID {pid}{where}) is writing {what} "
                                  "now: wait for it to finish, or choose another output "
                                  "with -o") from None
            path.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        return
    raise OutputError(f"cannot take the lock {path}: choose another output with -o")


@contextlib.contextmanager
def output_lock(output: Path):
    """Held while `output` (a photo, or a folder of them) is written: a second run writing the
    same output refuses at once. The lock file sits beside it and goes after."""
    path = output.parent / f".{output.name}.nstvideo-lock"
    take_lock(path, output.name)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
