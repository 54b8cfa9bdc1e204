"""Extraction: run a planned cache's shards as reader -> preprocess -> encoder -> writer.

Input: a cache planned by ``xmic.extract.planning.plan`` (its ``ExtractPlan``) and an
``ExtractConfig``. ``run_shards`` makes one ``ExtractionRun`` (encoder, cache, config, commit
queue, progress bar and a typed ``ExtractSummary``) and runs it split -> shard -> encode: per
split one DataLoader whose worker processes read each segment's sampled frames, crop hands and
resize them (``reader``, ``xmic.extract.segment_reader``; uint8, or JPEG bytes and boxes with
``decode: gpu``, decoded and resized on the device by ``xmic.extract.device_decode``); a
prefetch thread receives segments while the batch before encodes and the CPU encoder shares the
cores with the workers (``xmic.extract.feeding``); frames of many segments are packed into full
encoder batches; each view's ``writer`` (``ShardWriter``) records embeddings, or the failure of a
segment with its message (never zeros), and commits in the writer thread
(``xmic.extract.commits``). Reader and writer are attributes of the run, replaceable as
clip-retrieval's runner composes its parts. Returns the summary; failures are counted, not
hidden.
"""
from __future__ import annotations

import errno
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch.utils.data import DataLoader

from xmic.cache import Cache, ShardWriter
from xmic.cache.claims import reap_dead_claims
from xmic.cache.writer import disk_full
from xmic.files.atomic import caused_by
from xmic.cache import fingerprint as F
from xmic.cache.paths import ARCHIVE_INDEX, CacheError
from xmic.cache.redo import supersede
from xmic.cache.datasets import dataset
from xmic.cache.sampling import sampling_fingerprint
from xmic.config import XmicError, config_to_dict
from xmic.extract.config import ExtractConfig
from xmic.extract.boxes import PAIRING
from xmic.extract.device_decode import DECODERS, DeviceDecoder, check_device_decode
from xmic.extract.feeding import (CpuShare, Packer, Prefetch, Take, encode_packed,
                                  open_files_for_workers)
from xmic.extract.commits import CommitQueue, CommittedElsewhere, same_inputs
from xmic.extract.plan_record import ExtractPlan, SplitPlan
from xmic.extract.planning import PlanError, still_broken
from xmic.extract.segment_reader import SegmentFrames


class Interrupted(XmicError):
    """Ctrl-C (or SIGINT) during extraction: what was encoded before is committed."""
    exit_code = 130


@dataclass
class ExtractSummary:
    """What a run did; reads as a mapping too (``summary["frames"]``), as reports use it."""
    shards_done: int = 0        # committed by this run
    shards_skipped: int = 0     # done before
    shards_failed: int = 0      # raised while encoding or committing
    shards_elsewhere: int = 0   # running in another process, or committed by it first
    shards_with_failed_segments: int = 0  # of shards_done: committed, and failed by the rule
    segments_failed: int = 0
    frames: int = 0
    failed_kept: list = field(default_factory=list)    # committed earlier with failed segments
    failures: list = field(default_factory=list)       # "shard: segment: why"
    warnings: list = field(default_factory=list)
    fallbacks: dict = field(default_factory=dict)      # split -> [hand-crop rows, full frames]
    redone: list = field(default_factory=list)         # moved aside by --redo-failed
    still_broken: dict = field(default_factory=dict)   # shard -> why its inputs still fail

    def __getitem__(self, key: str):
        return getattr(self, key)

    def to_json(self) -> dict:
        return asdict(self)


def run_shards(cache_dir: Path, cfg: ExtractConfig, shard_ids: list[int] | list[str] | None = None,
               encoder=None, echo=print, commits: CommitQueue | None = None,
               redo_failed: bool = False) -> ExtractSummary:
    """Extract the chosen shards (numbers or names; default all) that are not done: pending
    ones and those whose attempt raised. A shard that raises is marked failed with its error
    and the others go on. Committed shards holding failed segments (bad inputs) are kept and
    listed in ``failed_kept`` unless ``redo_failed``: then they are moved aside
    (``xmic.cache.redo``) and encoded again, after the inputs were fixed."""
    from xmic.towers.encoders import load_encoder
    cache = Cache.open(cache_dir)
    enc = encoder or load_encoder(cfg.model, cfg.weights, cfg.device, cfg.precision, cfg.seed)
    run = ExtractionRun(cache, enc, cfg, commits or CommitQueue(), echo)
    return run.run(_resolve_shards(cache.shards(), shard_ids), redo_failed)


class ExtractionRun:
    """One extraction over a planned cache: split -> shard -> encode."""
    reader = SegmentFrames   # (rows, split plan, pixel transform, config) -> a segment Dataset
    writer = ShardWriter     # one per (view, shard)

    def __init__(self, cache: Cache, enc, cfg: ExtractConfig, commits: CommitQueue, echo):
        self.cache, self.enc, self.cfg, self.commits, self.echo = cache, enc, cfg, commits, echo
        self.plan = ExtractPlan.load(cache.root)
        self.names = cfg.view_names()  # planned view -> the cache view it is written to
        self.summary = ExtractSummary(warnings=list(enc.warnings))
        self.submitted = 0             # shards handed to the commit queue
        self.bar = None

    def run(self, chosen: list[str], redo_failed: bool = False) -> ExtractSummary:
        cache, s = self.cache, self.summary
        check_device_decode(self.cfg.decode, self.enc,
                            {k: dataset(i.dataset) for k, i in self.plan.splits.items()})
        for w in s.warnings:  # before the work (fp16 on a CPU, random weights), not after it
            self.echo(f"WARNING: {w}")
        open_files = open_files_for_workers()
        for v in cache.views():  # claims left by killed or interrupted writers on this host
            reap_dead_claims(cache.root, v)
        if redo_failed:
            s.redone, s.still_broken = supersede_failed(cache, self.plan, self.names, chosen)
        by_shard: dict[str, list[dict]] = {}  # the plan's rows grouped once: start-up is linear
        for r in cache.plan().to_pylist():
            by_shard.setdefault(r["shard"], []).append(r)
        from tqdm import tqdm
        self.bar = tqdm(total=sum(len(by_shard.get(x, ())) for x in chosen), unit="seg",
                        desc="extract", disable=None)
        try:
            for split, info in self.plan.splits.items():
                self.run_split(split, info, chosen, by_shard)
            self.settle(self.commits.drain())
        except Exception as e:
            self.stopped(e, open_files)
            raise
        finally:
            self.bar.close()
        cache.index(refresh=True)
        return s

    def settle(self, errors: list) -> None:
        """The commits' outcome: a failed commit is recorded on its shard; a full disk stops."""
        s = self.summary
        for e in errors:
            if disk_full(e):
                raise e
        s.shards_done = self.submitted - len(errors)
        for e in errors:
            if isinstance(e, CommittedElsewhere):
                s.shards_elsewhere += 1
            else:
                s.shards_failed += 1
                s.failures.append(f"commit: {type(e).__name__}: {e}")

    def stopped(self, e: Exception, open_files: int) -> None:
        """Out of files or disk: what was encoded before and fits is committed, and the error
        says so in one line."""
        if caused_by(e, errno.EMFILE, "Too many open files"):
            self.commits.drain()
            raise CacheError(f"{self.cache.root}: the process ran out of open files (ulimit -n "
                             f"is {open_files}); committed shards are intact: raise the limit "
                             "(ulimit -n 65536) or use fewer --workers, then run the same "
                             "command again") from None
        if disk_full(e):
            self.commits.drain()
            raise CacheError(f"{self.cache.root}: the disk is full (no space left on device); "
                             "committed shards are intact and the half-written one is removed: "
                             "free space, then run the same command again") from None

    def run_split(self, split: str, info: SplitPlan, chosen: list[str], by_shard: dict) -> None:
        """Encode every chosen, uncommitted shard of one split."""
        cache, enc, cfg, s = self.cache, self.enc, self.cfg, self.summary
        fps = view_fingerprints(enc, cfg, info)
        have = cache.views()
        for v, fp in fps.items():
            if self.names.get(v, v) in have:
                cache.check_view(self.names.get(v, v), enc.dim, fp)  # refuse before any work
        work, done, held, elsewhere = shard_work(cache, split, info.views, self.names, chosen,
                                                 by_shard)
        s.shards_skipped += done
        s.failed_kept += held
        s.shards_elsewhere += len(elsewhere)
        # one loader for the whole split: its workers (and their box caches) live across shards
        loader = DataLoader(self.reader([r for _, _, rows in work for r in rows], info,
                                        enc.pixels, cfg, cache.root / ARCHIVE_INDEX),
                            batch_size=None, num_workers=cfg.workers,
                            pin_memory=enc.device.type == "cuda")
        items = Prefetch(loader, 2 * max(1, cfg.workers))  # received while the batch before encodes
        share = (CpuShare(cfg.workers, cfg.threads, items, worker_pids=items.worker_pids)
                 if enc.device.type == "cpu" else None)
        try:
            for shard, todo, rows in work:
                full = self.commits.disk_full()
                if full is not None:  # encoding more shards that cannot be written wastes hours
                    raise full
                self.run_shard(split, info, fps, (shard, todo, rows), Take(items, len(rows)),
                               share)
        finally:
            items.close()
            if share is not None:
                share.restore()

    def run_shard(self, split: str, info: SplitPlan, fps: dict, job: tuple, take: Take,
                  share: CpuShare | None) -> None:
        """One shard's views: encoded, then handed to the commit queue; a shard that raises is
        marked failed and the next goes on."""
        (shard, todo, rows), s = job, self.summary
        writers: dict[str, ShardWriter] = {}
        try:
            for v in todo:
                writers[v] = self.writer(self.cache, self.names.get(v, v), shard, self.enc.dim,
                                         fps[v], producer_config=config_to_dict(self.cfg),
                                         provenance={"split": split, **info.to_json()},
                                         still_valid=same_inputs(self.cache.root, split, info)
                                         ).start()
            stats = self.encode_shard(take, writers, shard, share)
        except KeyboardInterrupt:  # the shard in progress is cleanly not committed
            for w in writers.values():
                w.claim.release()
            errors = self.commits.drain()  # the shards encoded before it are
            raise Interrupted(
                f"interrupted at shard {shard}: the {self.submitted - len(errors)} shard(s) "
                f"encoded before it are committed, {shard} is not; run the same command again "
                "to continue") from None
        except Exception as e:  # the shard is marked failed; the next one goes on
            for w in writers.values():
                w.record_failure(e)
            if disk_full(e):
                raise
            take.drain()  # the loader's next items belong to the next shard
            s.shards_failed += 1
            s.failures.append(f"{shard}: {type(e).__name__}: {e}")
            self.echo(f"shard {shard}: FAILED: {type(e).__name__}: {e}")
            return
        seconds = stats.pop("seconds")
        crop_rows = stats.pop("crop_rows")
        if stats.pop("segments_failed"):  # committed with failed segments: a failed shard
            s.shards_with_failed_segments += 1
        if crop_rows is not None:  # per split: [hand-crop rows, of them full frames]
            got = s.fallbacks.setdefault(split, [0, 0])
            got[0], got[1] = got[0] + crop_rows[0], got[1] + crop_rows[1]
        self.commits.submit(list(writers.values()), stats)
        self.submitted += 1
        self.echo(f"shard {shard}: {len(rows)} segments, views {todo}, {seconds:.1f}s "
                  f"(decode {stats['decode_s']:.1f}s, encode {stats['encode_s']:.1f}s; writing)")

    def segment_failed(self, writers: dict, shard: str, sid: str, err: str) -> None:
        """A segment that could not be read: recorded failed in every view, never zeros."""
        for w in writers.values():
            w.fail(sid, err)
        self.summary.segments_failed += 1
        self.summary.failures.append(f"{shard}: {sid}: {err}")

    def encode_shard(self, loader, writers: dict[str, ShardWriter], shard: str,
                     share: CpuShare | None = None) -> dict:
        """Decode, encode and hand every segment of one shard (``loader``: its items) to its
        writers; returns stats."""
        enc, cfg, summary, bar = self.enc, self.cfg, self.summary, self.bar
        todo = list(writers)
        t0 = time.perf_counter()
        decode_s = encode_s = 0.0
        packer = Packer(todo, cfg.batch_size)  # whole batches across segments; the last one short
        batch_used = cfg.batch_size

        def encode_view(v, pieces):
            nonlocal batch_used
            embs, batch_used = encode_packed(enc, pieces, batch_used)
            return embs

        def flush(final=False):
            nonlocal encode_s
            t = time.perf_counter()
            if share is not None:
                share.adjust()
            for sid, frames, embs in packer.encode(encode_view, final):
                fell = fallbacks.pop(sid, [])
                for v in todo:
                    writers[v].add(sid, embs[v].numpy(), frames, fell if crops[v] else None)
                if any(crops.values()):
                    crop_rows[0] += len(frames)
                    crop_rows[1] += len(fell)
                summary.frames += len(frames)
            encode_s += time.perf_counter() - t

        decoder = DeviceDecoder(enc.pixels, enc.device) if cfg.decode == "gpu" else None
        crops = {v: w.fingerprint.get("crop") is not None for v, w in writers.items()}
        fallbacks: dict[str, list[int]] = {}  # segment -> frames whose crop is the full frame
        crop_rows = [0, 0]  # hand-crop rows written, of them fallen back
        t, failed = time.perf_counter(), 0
        for sid, frames, tensors, err, fell in loader:
            tensors, err = decoded(decoder, tensors, err)
            decode_s += time.perf_counter() - t
            bar.update()
            bar.set_postfix(frames_s=f"{summary.frames / max(bar.format_dict['elapsed'], 1e-9):.0f}")
            if err:
                self.segment_failed(writers, shard, sid, err)
                failed += 1
            else:
                fallbacks[sid] = fell
                packer.add(sid, frames, tensors)
                if packer.ready():
                    flush()
            t = time.perf_counter()
        flush(final=True)
        return {"decode_s": round(decode_s, 6), "encode_s": round(encode_s, 6),
                "batch_size_used": batch_used, "seconds": time.perf_counter() - t0,
                "segments_failed": failed,
                "crop_rows": crop_rows if any(crops.values()) else None}


def decoded(decoder, tensors, err):
    """A segment's frames decoded on the device (``decode: gpu``; {view: uint8 [n, 3, H, W]}),
    or its error."""
    if decoder is None or err:
        return tensors, err
    try:
        return decoder(tensors), None
    except XmicError as e:
        return tensors, str(e)


def view_fingerprints(enc, cfg: ExtractConfig, info: SplitPlan) -> dict:
    """Each planned view's fingerprint: the encoder, preprocessing, sampling, and for hand
    crops the crop rule with the split's box source."""
    sampling = sampling_fingerprint(info.dataset, cfg.sampling, cfg.per_bin, cfg.bins)
    crop = F.hand_crop_rule(cfg.hand_score, cfg.object_score, cfg.min_box_px,
                            info.box_format, info.frame_keys, PAIRING.get(info.box_format))
    out = {}
    for v in info.views:
        out[v] = F.view_fingerprint(enc.identity, enc.precision,
                                    {**enc.preprocess, **DECODERS[cfg.decode]},
                                    crop if v == "hand_crop" else None, sampling)
    return out


def _resolve_shards(all_shards: list[str], shards) -> list[str]:
    if shards is None:
        return all_shards
    out, known = [], set(all_shards)
    for s in shards:
        if isinstance(s, int):
            if not 0 <= s < len(all_shards):
                raise PlanError(f"shard number {s} is outside 0..{len(all_shards) - 1}")
            out.append(all_shards[s])
        elif s in known:
            out.append(s)
        else:
            raise PlanError(f"shard {s!r} is not in the plan")
    return out


def shard_work(cache, split: str, views: list[str], names: dict, chosen: list[str],
               by_shard: dict) -> tuple[list, int, list, list]:
    """(shard, views still to write, its rows) of every chosen shard of ``split`` that is
    pending or whose attempt raised, in plan order; how many are done; the shards whose
    committed views hold failed segments (left as they are: ``redo_failed`` supersedes them
    first); and the shards a live writer of another process is extracting (left to it).
    Linear in shards and rows: one state listing per view, the plan's rows grouped by shard
    beforehand."""
    states = {v: cache.shard_states(names.get(v, v)) for v in views}
    committed = {v: cache.committed(names.get(v, v)) for v in views}
    in_split = set(cache.shards(split))
    work, done, held, elsewhere = [], 0, [], []
    for shard in chosen:
        if shard not in in_split:
            continue
        todo = [v for v in views if states[v].get(shard) != "done"]
        if any(states[v].get(shard) == "running" for v in todo):  # a live writer elsewhere
            elsewhere.append(shard)
            continue
        if any(shard in committed[v] for v in todo):  # committed with failed segments
            held.append(shard)
            todo = [v for v in todo if shard not in committed[v]]
        if todo:
            work.append((shard, todo, [{**r, "views": todo} for r in by_shard.get(shard, ())]))
        elif shard not in held:
            done += 1
    return work, done, held, elsewhere


def supersede_failed(cache, meta: ExtractPlan, names: dict, chosen: list[str]) -> tuple[list, dict]:
    """Move aside every chosen shard committed with failed segments, in each view that holds
    them, so that it is extracted again (``--redo-failed``), unless their segments' frames or
    boxes are still missing; returns (shards moved aside, shard -> why kept)."""
    views = sorted({names.get(v, v) for info in meta.splits.values() for v in info.views})
    states = {v: cache.shard_states(v) for v in views}
    committed = {v: cache.committed(v) for v in views}
    redo = [s for s in chosen if any(states[v].get(s) == "failed" and s in committed[v]
                                     for v in views)]
    broken = still_broken(cache, redo, meta)  # inputs still missing: redoing them is for nothing
    for shard in redo:
        if shard not in broken:
            supersede(cache.root, [v for v in views if shard in committed[v]], shard)
    return [s for s in redo if s not in broken], broken
