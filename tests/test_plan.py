"""The plan of a render: shots, pieces of long shots and their overlaps, and the cursor that
reads a source forward once for units taken in order."""

import numpy as np

from nstvideo.video.assemble import fade
from nstvideo.video.job import Cursor
from nstvideo.video.plan import MAX_PIECE, Plan, make_units


def test_one_process_renders_whole_shots():
    units = make_units(1000, [0, 10, 600], workers=1)
    assert [(u.begin, u.stop, u.head, u.tail) for u in units] == [
        (0, 10, 0, 0), (10, 600, 0, 0), (600, 1000, 0, 0)]


def test_long_shots_split_into_overlapping_pieces_for_several_workers():
    units = make_units(400, [0, 20], workers=2, overlap=8)
    # target piece: 400 / (2 workers x 2) = 100 frames; the 380-frame shot gives 4 pieces
    assert units[0].frames == 20 and units[0].head == units[0].tail == 0
    pieces = units[1:]
    assert len(pieces) == 4 and all(u.shot == 1 for u in pieces)
    assert pieces[0].begin == 20 and pieces[-1].stop == 400
    for a, b in zip(pieces, pieces[1:]):
        assert a.tail == b.head == 8 and b.begin == a.stop - 8  # shared, cross-faded frames
    own = [k for u in units for k in range(*u.own)] + \
        [k for u in units for k in range(u.begin, u.begin + u.head)]
    assert sorted(own) == list(range(400))  # every output frame exactly once
    assert [u.index for u in units] == list(range(len(units)))


def test_pieces_stay_long_enough_and_short_enough():
    assert len(make_units(40, [0], workers=8, overlap=16)) == 1  # no piece under 4x overlap
    units = make_units(10 * MAX_PIECE, [0], workers=2, overlap=16)
    assert max(u.frames for u in units) <= MAX_PIECE + 16
    indep = make_units(100, [0], workers=4, chained=False)  # independent frames: no overlap
    assert len(indep) > 1 and all(u.head == u.tail == 0 for u in indep)


def test_plan_round_trips_through_json():
    plan = Plan([0.0, 0.5, 1.0], [0, 2], make_units(3, [0, 2]))
    assert Plan.from_json(plan.to_json()) == plan


def test_fade_goes_from_the_earlier_piece_to_the_later():
    a, b = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8)
    steps = [int(fade(a, b, i, 3)[0, 0, 0]) for i in range(3)]
    assert steps == [50, 100, 150]


def test_cursor_reads_forward_once_and_serves_overlaps_from_memory():
    opened, decoded = [], []

    def open_frames(want):
        opened.append(1)
        for k in range(100):
            if k >= want():
                decoded.append(k)
            yield k, (np.full((1, 1, 3), k, np.uint8) if k >= want() else None), k / 10

    c = Cursor(open_frames, keep=5)
    got = lambda a, b: [int(f[0, 0, 0]) for _, f in c.take(a, b)]  # noqa: E731
    assert got(0, 10) == list(range(10))
    assert got(6, 20) == list(range(6, 20)) and len(opened) == 1  # overlap from memory
    assert got(30, 33) == [30, 31, 32] and len(opened) == 1  # forward: skipped, not reopened
    assert not set(range(20, 25)) & set(decoded)  # ... and the frames between not decoded
    assert got(5, 7) == [5, 6] and len(opened) == 2  # backwards beyond memory: reopened
    assert got(98, 200) == [98, 99]  # the source ends first
