"""Feeding the encoder: the prefetch thread keeps order and errors, the CPU share picks the
encoder's threads from how far decoding is ahead, and the thread count leaves the embeddings
bit-identical; a segment's views travel as one storage; the packer cuts whole batches across
segments and gives every segment back whole, in order."""
from __future__ import annotations

import time

import pytest
import torch

from xmic.extract.feeding import CpuShare, Packer, Prefetch, Take
from xmic.extract.segment_reader import one_storage
from xmic.towers.encoders import TINY_CONFIG, load_encoder


def test_prefetch_keeps_order_and_raises_where_the_iterator_did():
    def items():
        yield from range(5)
        raise OSError("disk gone at item 5")
    p = Prefetch(items(), 2)
    assert [next(p) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(OSError, match="item 5"):
        next(p)
    with pytest.raises(OSError):  # and keeps saying so
        next(p)


def test_prefetch_runs_ahead_by_its_depth_and_close_stops_it():
    pulled = []

    def items():
        for i in range(1000):
            pulled.append(i)
            yield i
    p = Prefetch(items(), 3)
    deadline = time.time() + 5
    while not p._q.full() and time.time() < deadline:
        time.sleep(0.01)
    assert p._q.full() and len(pulled) <= 3 + 1  # depth items queued, one more in hand at most
    take = Take(p, 2)
    assert list(take) == [0, 1]
    p.close()
    p._thread.join(5)
    assert not p._thread.is_alive() and len(pulled) < 10


def test_stop_iteration_ends_a_prefetch_and_says_it_is_exhausted():
    p = Prefetch(iter([1, 2]), 4)
    deadline = time.time() + 5
    while not p.exhausted() and time.time() < deadline:  # two of four queued, nothing left
        time.sleep(0.01)
    assert p.exhausted() and not p._q.full()
    assert list(p) == [1, 2]


class _Ahead:  # a Prefetch: only whether anything is left to decode
    def __init__(self, exhausted=False):
        self._exhausted = exhausted

    def exhausted(self):
        return self._exhausted


def test_cpu_share_gives_the_encoder_every_core_only_while_the_workers_idle():
    before = torch.get_num_threads()
    cpu = {"s": 0.0}

    def after_a_window(workers, threads, ahead, cores, busy):
        """Threads for the batch after one in which each worker used ``busy`` of a core."""
        share = CpuShare(workers, threads, ahead, cores=cores, worker_pids=lambda: [1] * workers)
        share._worker_cpu = lambda: cpu["s"]
        assert share.threads() == (threads or cores)  # the first batch: nothing known yet
        share.batches = 1
        share._last = (time.perf_counter() - 1.0, cpu["s"])
        cpu["s"] += busy * workers  # over one second
        return share.threads()
    try:
        assert after_a_window(2, 0, _Ahead(), 8, busy=0.9) == 6   # decoding is the slower stage
        assert after_a_window(2, 0, _Ahead(), 8, busy=0.02) == 8  # the encoder is
        assert after_a_window(4, 0, _Ahead(), 2, busy=0.9) == 1
        assert after_a_window(0, 0, _Ahead(), 2, busy=0.0) == 1   # the prefetch thread decodes
        assert after_a_window(2, 0, _Ahead(True), 8, busy=0.9) == 8  # nothing left to decode
        assert after_a_window(2, 3, _Ahead(), 8, busy=0.0) == 3   # fixed by the config
        share = CpuShare(1, 0, _Ahead(), cores=2)
        share.WINDOW = 3600.0  # a stalled machine must not end the window between the two calls
        share.adjust()
        assert torch.get_num_threads() == 2 and share.batches == 1
        share.adjust()  # within the window: the workers count as busy until measured
        assert torch.get_num_threads() == 1 and share.batches == 2
        share.restore()
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_worker_cpu_time_is_read_from_proc():
    import os
    from xmic.extract.feeding import cpu_seconds
    t0 = cpu_seconds(os.getpid())
    x = 0
    for i in range(3_000_000):
        x += i
    assert cpu_seconds(os.getpid()) > t0 and cpu_seconds(2 ** 31) == 0.0


def test_the_thread_count_leaves_embeddings_bit_identical():
    enc = load_encoder(str(TINY_CONFIG), "random", "cpu", "fp32", 0)
    x = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = enc.encode_images(x)
        torch.set_num_threads(2)
        two = enc.encode_images(x)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_a_segments_views_share_one_storage():
    views = {"full_frame": torch.arange(24, dtype=torch.uint8).view(2, 3, 2, 2),
             "hand_crop": torch.arange(24, 60, dtype=torch.uint8).view(3, 3, 2, 2)}
    packed = one_storage(dict(views))
    assert list(packed) == ["full_frame", "hand_crop"]
    assert all(torch.equal(packed[k], views[k]) for k in views)
    ptr = {packed[k].untyped_storage().data_ptr() for k in packed}
    assert len(ptr) == 1
    single = {"full_frame": views["full_frame"]}
    assert one_storage(single)["full_frame"] is views["full_frame"]


def test_the_packer_encodes_whole_batches_across_segments_and_returns_segments_whole():
    gen = torch.Generator().manual_seed(0)
    views, sizes = ["full_frame", "hand_crop"], [5, 9, 3, 12, 7]
    segs = [(f"s{i}", list(range(n)), {v: torch.randint(0, 256, (n, 3, 2, 2), dtype=torch.uint8,
                                                         generator=gen) for v in views})
            for i, n in enumerate(sizes)]
    calls = []

    def fn(view, pieces):  # an "encoder": the mean pixel of each frame, the batch recorded
        calls.append((view, sum(len(p) for p in pieces)))
        return [p.float().mean(dim=(1, 2, 3))[:, None] for p in pieces]
    packer, got = Packer(views, 8), []
    for sid, frames, t in segs:
        packer.add(sid, frames, t)
        if packer.ready():
            got += packer.encode(fn)
            assert not packer.ready()  # no whole batch is left waiting
    got += packer.encode(fn, final=True)
    assert [g[0] for g in got] == [s[0] for s in segs] and packer.queue == []
    for (sid, frames, t), (gid, gframes, embs) in zip(segs, got):
        assert gframes == frames
        for v in views:
            assert torch.equal(embs[v], t[v].float().mean(dim=(1, 2, 3))[:, None]), (sid, v)
    for v in views:
        per_view = [n for view, n in calls if view == v]
        assert per_view == [8, 8, 8, 8, 4]  # whole batches; only the last is short


def test_packed_embeddings_equal_per_segment_ones_within_rounding():
    """Where batches are cut moves a frame's embedding by float32 rounding only (CPU kernels
    block by batch size), as a different --batch-size does."""
    from xmic.extract.feeding import encode_packed
    enc = load_encoder(str(TINY_CONFIG), "random", "cpu", "fp32", 0)
    gen = torch.Generator().manual_seed(1)
    segs = [torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen) for n in (7, 13, 4)]
    packer = Packer(["full_frame"], 8)
    for i, t in enumerate(segs):
        packer.add(f"s{i}", list(range(len(t))), {"full_frame": t})
    out = packer.encode(lambda v, p: encode_packed(enc, p, 8)[0], final=True)
    for t, (_, _, e) in zip(segs, out):
        assert torch.allclose(e["full_frame"], enc.encode_images(t), atol=1e-6, rtol=0)
