"""Feeding the encoder: segments fetched ahead of it, packed into full batches, and the CPU
shared between decoding workers and the encoder.

- ``Prefetch(items, depth)``: the items of an iterator (the DataLoader's), pulled by one
  thread up to ``depth`` ahead, so that receiving a worker's tensors (unpickling, mapping its
  shared memory) overlaps the encoding of the batch before. Items come out in order; an
  exception of the iterator comes out where it happened; ``close`` stops the thread.
- ``Take(items, n)``: the next ``n`` items of an iterator shared by consecutive shards.
- ``encode_packed(enc, [n_i, 3, H, W] uint8 tensors, batch)``: their embeddings [n_i, D],
  encoded in full batches, the packed batch pinned for a GPU; the batch halves on CUDA OOM.
- ``Packer(views, batch)``: segments' frames queued per view and cut into whole batches across
  segment boundaries (a segment's remainder waits for the next segments' frames); ``encode``
  hands back the segments whose every view is encoded, in order.
- ``CpuShare``: the CPU encoder's intra-op threads, shared with the decoding workers.
- ``open_files_for_workers()``: the process's open-file limit raised to its hard limit (each
  segment a worker hands over is a shared-memory descriptor until encoded; archives and videos
  are open too); where it stays low (under ``FEW_FILES``), tensors are shared by file name.
"""
from __future__ import annotations

import os
import queue
import threading
import time

import torch

FEW_FILES = 1024  # below this open-file limit, workers share tensors by file name


class Prefetch:
    def __init__(self, items, depth: int):
        self._q: queue.Queue = queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._end: BaseException | None = None
        self._exhausted = False  # every item is fetched: nothing more to decode
        self.source = iter(items)
        self._thread = threading.Thread(target=self._run, args=(self.source,), daemon=True,
                                        name="xmic-prefetch")
        self._thread.start()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items) -> None:
        try:
            for item in items:
                if not self._put((True, item)):
                    return
            self._exhausted = True
            self._put((False, StopIteration()))
        except BaseException as e:  # handed to the consumer, raised there
            self._put((False, e))

    def __iter__(self):
        return self

    def __next__(self):
        if self._end is not None:
            raise self._end
        ok, value = self._q.get()
        if ok:
            return value
        self._end = value
        raise value

    def worker_pids(self) -> list[int]:
        """The processes of a DataLoader source (none for another iterator)."""
        return [w.pid for w in getattr(self.source, "_workers", []) if w.pid]

    def exhausted(self) -> bool:
        """Whether every item is fetched: nothing is left to decode."""
        return self._exhausted

    def close(self) -> None:
        """Stop fetching (the thread ends at its next item; the loader is then released)."""
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass


class Take:
    """The next ``n`` items of an iterator shared by consecutive shards; ``drain`` skips the
    ones a failed shard did not take, so the next shard starts at its own first segment."""

    def __init__(self, items, n: int):
        self.items, self.left = items, n

    def __iter__(self):
        while self.left > 0:
            self.left -= 1
            yield next(self.items)

    def drain(self) -> None:
        for _ in self:
            pass


def encode_packed(enc, tensors: list[torch.Tensor], batch_size: int) -> tuple[list[torch.Tensor], int]:
    """Encode [n_i, 3, H, W] tensors (uint8 from the workers) packed into full batches; halves
    the batch on CUDA OOM. The packed batch is pinned for a GPU, so its copy is asynchronous."""
    x = torch.cat(tensors) if tensors else torch.zeros(0)
    if enc.device.type == "cuda" and x.device.type == "cpu" and len(x):
        x = x.pin_memory()
    outs, i = [], 0
    while i < len(x):
        try:
            outs.append(enc.encode_images(x[i:i + batch_size]).cpu())
            i += batch_size
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            torch.cuda.empty_cache()
    emb = torch.cat(outs) if outs else torch.zeros(0)
    return list(emb.split([len(t) for t in tensors])), batch_size


class Packer:
    """Segments waiting for the encoder, their frames cut into whole batches: ``add`` queues a
    segment's {view: [n, 3, H, W]} tensors; ``ready()`` says whether a whole batch of some view
    is queued; ``encode(fn)`` encodes every view's whole batches (``final``: everything left,
    one short batch at most) through ``fn(view, pieces) -> [embeddings per piece]`` and returns
    the segments now complete as (segment id, frames, {view: [n, D]}), in the order added. A
    segment split between two batches keeps its first embeddings until the rest come, so every
    batch but the shard's last is full."""

    def __init__(self, views, batch: int):
        self.views, self.batch = list(views), batch
        self.queue: list[dict] = []  # {sid, frames, tensors, done: {v: n}, out: {v: [emb]}}

    def add(self, sid: str, frames, tensors: dict) -> None:
        self.queue.append({"sid": sid, "frames": frames, "tensors": tensors,
                           "done": {v: 0 for v in self.views}, "out": {v: [] for v in self.views}})

    def _left(self, v: str) -> int:
        return sum(len(e["tensors"][v]) - e["done"][v] for e in self.queue)

    def ready(self) -> bool:
        return any(self._left(v) >= self.batch for v in self.views)

    def encode(self, fn, final: bool = False) -> list[tuple]:
        for v in self.views:
            n = self._left(v)
            n = n if final else n - n % self.batch  # whole batches only, until the last
            pieces, owners = [], []
            for e in self.queue:
                if n <= 0:
                    break
                t = e["tensors"][v][e["done"][v]:]
                if not len(t):
                    continue
                t = t[:n]
                pieces.append(t)
                owners.append(e)
                n -= len(t)
            if not pieces:
                continue
            for e, emb in zip(owners, fn(v, pieces)):
                e["out"][v].append(emb)
                e["done"][v] += len(emb)
        complete = 0
        for e in self.queue:
            if any(e["done"][v] < len(e["tensors"][v]) for v in self.views):
                break
            complete += 1
        out, self.queue = self.queue[:complete], self.queue[complete:]
        return [(e["sid"], e["frames"], {v: joined(e["out"][v]) for v in self.views}) for e in out]


def joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """One segment's embeddings from the batches it was split across ([0] when it has none)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts) if parts else torch.zeros(0)


def available_cores() -> int:
    """The cores this process may run on (its affinity: a Slurm allocation's CPUs)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``; 0 where it cannot be read)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuShare:
    """The CPU encoder's intra-op threads, chosen before each packed batch (``adjust``).
    ``threads`` > 0 fixes them; 0 shares the cores with the decoding workers (``workers``; 0
    decodes in the prefetch thread, which counts as one). The encoder takes every core while
    the workers idle: for the first batch (as torch would), while the workers used under
    ``IDLE_CPU`` of their cores in the last ``WINDOW`` (their CPU time, read from ``/proc``:
    the encoder is the slower stage), and once nothing is left to decode; otherwise the cores
    the workers leave, at least one: OpenMP threads that share a core with a busy worker spin
    at every barrier (on 2 cores, 2 threads beside 2 decoding workers reach 0.6 of the serial
    bound, 1 thread 1.0). The workers' own CPU time is the signal because a contended encoder
    slows down too and would look like the slower stage. The thread count does not change the
    embeddings (tests/test_feeding.py)."""

    IDLE_CPU = 0.25
    WINDOW = 0.5  # seconds between two readings of the workers' CPU time

    def __init__(self, workers: int, threads: int, ahead: Prefetch, cores: int | None = None,
                 worker_pids=None):
        self.cores = cores or available_cores()
        self.fixed = threads if threads > 0 else None
        self.workers = workers
        self.leftover = max(1, self.cores - max(1, workers))
        self.ahead = ahead
        self.worker_pids = worker_pids or (lambda: [])
        self.before = torch.get_num_threads()
        self.batches = 0  # adjusted so far
        self._last = (time.perf_counter(), self._worker_cpu())
        self._idle = False

    def _worker_cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.worker_pids())

    def threads(self) -> int:
        if self.fixed:
            return self.fixed
        if not self.batches or self.ahead.exhausted():
            return self.cores
        now = time.perf_counter()
        then, cpu_then = self._last
        if now - then >= self.WINDOW:  # CPU time counts in clock ticks: measure over a while
            cpu = self._worker_cpu()
            self._last = (now, cpu)
            busy = (cpu - cpu_then) / (now - then) / max(1, self.workers)
            self._idle = self.workers > 0 and busy < self.IDLE_CPU
        return self.cores if self._idle else self.leftover

    def adjust(self) -> None:
        n = self.threads()
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self.batches += 1

    def restore(self) -> None:
        torch.set_num_threads(self.before)


def open_files_for_workers() -> int:
    """Raise this process's soft open-file limit to its hard limit (a node's ``ulimit -n`` is
    often 1024 or less, far below what decoding workers may hold); where the hard limit is low
    too, tensors from workers are shared by file name instead of by descriptor. Returns the
    soft limit in force."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < FEW_FILES:
        torch.multiprocessing.set_sharing_strategy("file_system")
    return soft
