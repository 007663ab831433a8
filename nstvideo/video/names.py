"""Every file name in a render folder (OUTPUT.frames/), in one table, and the test of what is
ours there: anything else is the user's, and a folder holding it is never written into or
deleted. Knows nothing of what the files hold.

    OUTPUT.frames/  state.json  plan.json  lock  command.json  latest.png
                    frame_NNNNNN.png (--keep-frames, at the end)
        uNNNNN/     frames.jsonl  frame_NNNNNN.png  seg_NNNN.mp4|.webm  fade.mp4|.webm
                    still_NNNNNN.png (the chain's held-pixel reference after frame N)
        keys/       (the keyframe method's painted keyframes: a unit store)
        net.pt      (the keyframe method's network and its training state)
"""

from __future__ import annotations

import re

from nstvideo.media.writer import FRAME_LIST

STATE = "state.json"  # the settings and inputs' fingerprints the render was started with
PLAN = "plan.json"  # its plan: frame times, shots, units, keyframes, threads
LOCK = "lock"  # the PID (and host) of the render in progress
COMMAND = "command.json"  # the command that started it (to resume it) and its engine
LATEST = "latest.png"  # the newest painted frame, replaced as the render goes (to look at)
FRAME = "frame_{:06d}.png"  # a finished frame (in a unit: numbered within it)
UNIT = "u{:05d}"  # a unit's store
KEYS = "keys"  # the keyframe method's painted keyframes (a store of their own)
NET = "net.pt"  # ... and the network it trains on them
RECORDS = "frames.jsonl"  # a store's records: frames, segments, done
SEGMENT = "seg_{:04d}{}"  # a store's frames encoded (index, the output codec's extension)
FADE = "fade{}"  # the cross-fade into a piece of a long shot, encoded
STILL = "still_{:06d}.png"  # after a frame of a chain: each pixel's content when last painted
                            # (what holding still pixels compares with; the last two kept)
SEGMENT_EXTS = (".mp4", ".webm")
LEGACY = ("segments.ffconcat",)  # left by earlier versions: still ours

_PARTIAL = r"\..*\.partial.*"  # media.writer's files on their way (PARTIAL_GLOB)


def _regex(template: str) -> str:
    """A name template ('frame_{:06d}.png', 'seg_{:04d}{}') as a regular expression."""
    out = []
    for part in re.split(r"(\{:0\dd\}|\{\})", template):
        if part == "{}":
            out.append("(" + "|".join(re.escape(e) for e in SEGMENT_EXTS) + ")")
        elif re.fullmatch(r"\{:0\dd\}", part):
            out.append(rf"\d{{{part[3]}}}")
        else:
            out.append(re.escape(part))
    return "".join(out)


def _names(*templates: str) -> re.Pattern:
    return re.compile("^(" + "|".join([*map(_regex, templates), _PARTIAL]) + ")$")


# what may stand in a render folder, and in a unit's (or the keyframes') folder
IN_FOLDER = _names(STATE, PLAN, LOCK, COMMAND, LATEST, FRAME_LIST, FRAME, UNIT, KEYS, NET, *LEGACY)
IN_UNIT = _names(RECORDS, FRAME_LIST, FRAME, SEGMENT, FADE, STILL)
UNIT_FOLDERS = (UNIT.replace("{:05d}", "[0-9]" * 5), KEYS)  # globs of the store folders
KEPT_FRAME = re.compile("^" + _regex(FRAME) + "$")  # an output frame kept in the folder
RENDERED = re.compile("^(" + _regex(FRAME) + "|" + _regex(UNIT) + ")$")  # frames or units
