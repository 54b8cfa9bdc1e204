"""Frame sampling against the released loaders' formulas, transcribed: EPIC-100's
``_uniform_frame_generator`` (linspace(start, stop - 1, 16), frames [start, stop)) and Ego4D's
``start_end_clip`` + ``get_item`` (the central 4 s of the action clip, linspace(a, b, 16)). For
every segment length 1..2000 and both rules: the evaluation frames equal the released ones, every
stored row is used, and with ``sampling=all`` training draws each reachable frame of a bin with
equal probability; caches of the earlier rule read as before."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xmic.cache.sampling import bin_layout, frames_to_store, released_positions, rows_layout
from xmic.train.data import rows

T = 16


def released_epic(start: int, stop: int):
    """(evaluation frames, [reachable training frames per bin]) as the released EPIC loader."""
    x, step = np.linspace(start, stop - 1, T, endpoint=False, retstep=True)
    ev = [int(i + step / 2) for i in x]
    tr = [[int(i) + r for r in range(int(step))] if int(step) else [int(i)] for i in x]
    return ev, tr


def released_ego4d(start: int, stop: int):
    """The same for the released Ego4D loader over the action clip's frames [start, stop)."""
    n = stop - start
    fps, mid = n // 8, n // 2
    a, b = max(0, mid - fps * 2), min(mid + fps * 2, n)
    x, step = np.linspace(a, b, T, endpoint=False, retstep=True)
    ev = [start + int(i + step / 2) for i in x]
    tr = [[start + int(i) + r for r in range(int(step))] if int(step) else [start + int(i)]
          for i in x]
    return ev, tr


def chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def chi_square_critical(df: int, z: float = 3.719) -> float:
    """Upper 1e-4 quantile of chi-square(df) (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * (2 / (9 * df)) ** 0.5) ** 3


RELEASED = {"epic": released_epic, "ego4d": released_ego4d}
LENGTHS = range(1, 2001)


def layout_of(rule, start, stop, frames):
    return bin_layout(rule, np.array([start]), np.array([stop]), np.asarray(frames, np.int64),
                      np.array([0, len(frames)]), T, "test", ["s"])


@pytest.mark.parametrize("rule", ["segment", "central-window"])
def test_evaluation_frames_equal_the_released_loaders_for_every_length(rule):
    from xmic.cache.sampling import RULES
    recorded = RULES[rule].recorded  # the name a fingerprint records: the same rule
    assert np.array_equal(released_positions(recorded, [5], [300], T)[0],
                          released_positions(rule, [5], [300], T)[0])
    start = 1 if rule == "segment" else 0  # EPIC frame files are 1-based, Ego4D clip frames 0-based
    starts = np.full(len(LENGTHS), start)
    stops = starts + np.array(LENGTHS)
    ev, _, _ = released_positions(rule, starts, stops, T)  # vectorised over all lengths at once
    agree_stored = 0
    for j, n in enumerate(LENGTHS):
        want_ev, want_tr = RELEASED[recorded](start, start + n)
        assert ev[j].tolist() == want_ev, n
        for policy in ("per_bin", "all"):
            stored = frames_to_store(rule, start, start + n, policy, 4, T)
            lay = layout_of(rule, start, start + n, stored)
            assert [stored[r] for r in lay.eval[0]] == want_ev, (n, policy)
            cands = [stored[lay.begin[0, i]:lay.begin[0, i] + lay.count[0, i]] for i in range(T)]
            assert all(set(c) <= set(w) for c, w in zip(cands, want_tr)), (n, policy)
            if policy == "all":  # every reachable frame of every bin is a candidate
                assert cands == want_tr, n
            else:  # every stored row serves: a training candidate or an evaluation frame
                used = set(want_ev).union(*map(set, cands))
                assert set(stored) == used, n
                assert all(len(c) == min(4, len(w)) for c, w in zip(cands, want_tr)), n
        agree_stored += 1
    assert agree_stored == len(LENGTHS)


@pytest.mark.parametrize("rule, n", [("epic", 161), ("epic", 40), ("ego4d", 240), ("ego4d", 7)])
def test_training_draws_every_reachable_frame_equally_with_all(rule, n):
    stored = frames_to_store(rule, 0, n, "all", 4, T)
    lay = layout_of(rule, 0, n, stored)
    layout = tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in (lay.begin, lay.count, lay.eval))
    g = torch.Generator().manual_seed(0)
    draws = 20000
    u = torch.rand(draws, T, generator=g)
    picked = rows(layout, torch.zeros(draws, dtype=torch.long), u).numpy()   # [draws, T]
    _, want = RELEASED[rule](0, n)
    for i in range(T):
        frames = np.asarray(stored)[picked[:, i]]
        assert set(frames.tolist()) == set(want[i])
        if len(want[i]) > 1:
            counts = np.array([(frames == f).sum() for f in want[i]])
            assert chi_square(counts) < chi_square_critical(len(counts) - 1), (i, counts)


def test_a_cache_of_the_earlier_rule_reads_as_before():
    """Sampling version 1 took rows as frames with step (n - 1)/T for every dataset."""
    counts = np.arange(1, 400)
    lay = rows_layout("epic", counts, T)
    for n, row in zip(counts, lay.eval):
        step = (n - 1) / T
        want = np.minimum(np.floor(np.linspace(0, n - 1, T, endpoint=False) + step / 2), n - 1)
        assert row.tolist() == want.astype(int).tolist()
        assert (lay.count[n - 1] == max(1, int(np.floor(step)))).all()


def test_a_cache_stored_for_other_bins_is_refused():
    from xmic.cache import CacheError
    stored = frames_to_store("epic", 1, 1001, "per_bin", 4, 16)
    with pytest.raises(CacheError, match="do not hold the frames the released loader uses for T=8"):
        bin_layout("epic", np.array([1]), np.array([1001]), np.asarray(stored), np.array(
            [0, len(stored)]), 8, "cache c, view v", ["P01_01_3"])


def test_storage_is_bounded():
    for n in (100, 1000, 10000):
        assert len(frames_to_store("epic", 1, 1 + n, "per_bin", 4, 16)) <= 16 * 5
    assert frames_to_store("epic", 5, 20, "all") == list(range(5, 20))  # [start, stop)
    with pytest.raises(ValueError, match="stops"):
        frames_to_store("epic", 10, 5)
