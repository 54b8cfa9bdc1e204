"""Extraction: run a planned cache's shards as reader -> encoder -> writer.

Input: a cache planned by ``xmic.extract.planning.plan`` (its ``extract_plan.json``) and an
``ExtractConfig``. ``run_shards``: for every uncommitted (view, shard), a DataLoader (worker
processes) decodes each segment's sampled frames, crops hands and resizes (uint8; with
``decode: gpu`` it reads JPEG bytes and boxes only, and ``xmic.extract.device_decode`` decodes
and resizes on the device); a prefetch thread receives segments while the batch before encodes
and the CPU encoder shares the cores with the workers (``xmic.extract.feeding``); frames of many
segments are packed into full encoder batches; each view's ``ShardWriter`` records embeddings,
or the failure of a segment with its message (never zeros). Class names become vocabularies in
``extract.vocabularies``. Returns summaries; failures are counted, not hidden.
"""
from __future__ import annotations

import errno
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from xmic.cache import Cache, ShardWriter
from xmic.cache.claims import reap_dead_claims
from xmic.cache.writer import disk_full
from xmic.files.atomic import caused_by
from xmic.cache import fingerprint as F
from xmic.cache.paths import CacheError
from xmic.cache.redo import supersede
from xmic.cache.datasets import dataset
from xmic.cache.sampling import frames_to_store, rule_of, sampling_fingerprint
from xmic.config import XmicError, config_to_dict
from xmic.extract.config import ExtractConfig
from xmic.extract.boxes import PAIRING, open_boxes
from xmic.extract.views import view_tensors
from xmic.extract.device_decode import DECODERS, DeviceDecoder, check_device_decode, jpeg_segment
from xmic.extract.feeding import (CpuShare, Packer, Prefetch, Take, encode_packed,
                                  open_files_for_workers)
from xmic.extract.media import frame_source
from xmic.extract.readers import read_frames
from xmic.extract.commits import CommitQueue, CommittedElsewhere, same_inputs
from xmic.extract.plan_record import ExtractPlan, SplitPlan
from xmic.extract.planning import PlanError, still_broken


class SegmentFrames(Dataset):
    """One item per segment: (segment_id, frame numbers, {view: uint8 [n, 3, H, W]} in one
    storage, or with ``decode: gpu`` a ``JpegSegment``, error or None, the frames whose hand
    crop fell back to the full frame)."""

    def __init__(self, rows: list[dict], kind: str, root: str, views, boxes: str | None,
                 transform, cfg: ExtractConfig, box_format: str | None = None):
        self.rows, self.kind, self.root, self.views = rows, kind, root, list(views)
        self.boxes_path, self.transform, self.cfg = boxes, transform, cfg
        self.box_format = box_format  # a folder's format, found at plan time
        self._boxes = None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r, c = self.rows[i], self.cfg
        fell: list[int] = []  # hand-crop frames that fell back to the full frame
        try:
            src = frame_source(self.kind, Path(self.root), r["video_id"], r["start_frame"])
            frames = frames_to_store(rule_of(self.kind), r["start_frame"], r["stop_frame"],
                                     c.sampling, c.per_bin, c.bins)
            views = r.get("views", self.views)  # a shard may need only some views
            if "hand_crop" in views and self._boxes is None:
                self._boxes = open_boxes(self.boxes_path, c.hand_score, c.object_score,
                                         c.min_box_px, self.box_format,
                                         trimmed=dataset(self.kind).trimmed)
            boxes, span = self._boxes, (r["start_frame"], r["stop_frame"])

            def box_of(f, width, height):
                box = boxes.box(r["video_id"], r["segment_id"], f, width, height, span)
                if box is None:
                    fell.append(f)
                return box
            if c.decode == "gpu":  # bytes and boxes only: the encoder's device decodes
                return r["segment_id"], frames, jpeg_segment(src, frames, views, box_of), None, fell
            out = view_tensors(read_frames(src, frames), frames, views, self.transform,
                               lambda f, im: box_of(f, im.width, im.height))
            return r["segment_id"], frames, one_storage(out), None, fell
        except XmicError as e:
            return r["segment_id"], [], {}, str(e), []
        except (ValueError, OSError) as e:
            return r["segment_id"], [], {}, f"{type(e).__name__}: {e}", []


def one_storage(tensors: dict) -> dict:
    """The views of one segment as slices of one tensor: a worker hands over one shared-memory
    block per segment, not one per view (each costs the receiver a file-descriptor exchange)."""
    if len(tensors) < 2:
        return tensors
    packed = torch.cat(list(tensors.values()))
    return dict(zip(tensors, packed.split([len(t) for t in tensors.values()])))


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


class Interrupted(XmicError):
    """Ctrl-C (or SIGINT) during extraction: what was encoded before is committed."""
    exit_code = 130


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


def run_shards(cache_dir: Path, cfg: ExtractConfig, shard_ids: list[int] | list[str] | None = None,
               encoder=None, echo=print, commits: CommitQueue | None = None,
               redo_failed: bool = False) -> dict:
    """Extract the chosen shards (numbers or names; default all) that are not done: pending
    ones and those whose attempt raised. A shard that raises is marked failed with its error
    and the others go on. Committed shards holding failed segments (bad inputs) are kept and
    listed in ``failed_kept`` unless ``redo_failed``: then they are moved aside
    (``xmic.cache.redo``) and encoded again, after the inputs were fixed."""
    from xmic.towers.encoders import load_encoder
    cache = Cache.open(cache_dir)
    meta = ExtractPlan.load(cache.root)
    enc = encoder or load_encoder(cfg.model, cfg.weights, cfg.device, cfg.precision, cfg.seed)
    check_device_decode(cfg.decode, enc, {s: dataset(i.dataset) for s, i in meta.splits.items()})
    open_files = open_files_for_workers()
    names = cfg.view_names()  # planned view -> the cache view it is written to
    chosen = _resolve_shards(cache.shards(), shard_ids)
    for v in cache.views():  # claims left by killed or interrupted writers on this host
        reap_dead_claims(cache.root, v)
    summary = {"shards_done": 0, "shards_skipped": 0, "shards_failed": 0, "segments_failed": 0,
               "shards_elsewhere": 0,  # running in another process, or committed by it first
               "failed_kept": [], "failures": [], "frames": 0, "warnings": list(enc.warnings),
               "fallbacks": {},
               "redone": [], "still_broken": {}}
    if redo_failed:
        summary["redone"], summary["still_broken"] = supersede_failed(cache, meta, names, chosen)
    by_shard: dict[str, list[dict]] = {}  # the plan's rows grouped once: start-up is linear
    for r in cache.plan().to_pylist():
        by_shard.setdefault(r["shard"], []).append(r)
    commits = commits or CommitQueue()
    from tqdm import tqdm
    bar = tqdm(total=sum(len(by_shard.get(s, ())) for s in chosen), unit="seg", desc="extract",
               disable=None)
    try:
        for split, info in meta.splits.items():
            _run_split(cache, enc, cfg, split, info, names, chosen, by_shard, summary,
                       commits, bar, echo)
        errors = commits.drain()
        for e in errors:  # a failed commit is recorded on its shard; a full disk stops the run
            if disk_full(e):
                raise e
            summary["shards_done"] -= 1
            if isinstance(e, CommittedElsewhere):
                summary["shards_elsewhere"] += 1
                continue
            summary["shards_failed"] += 1
            summary["failures"].append(f"commit: {type(e).__name__}: {e}")
    except Exception as e:
        if caused_by(e, errno.EMFILE, "Too many open files"):
            commits.drain()
            raise CacheError(f"{cache.root}: the process ran out of open files (ulimit -n is "
                             f"{open_files}); committed shards are intact: raise "
                             "the limit (ulimit -n 65536) or use fewer --workers, then run the "
                             "same command again") from None
        if not disk_full(e):
            raise
        commits.drain()  # what was encoded before and fits is committed
        raise CacheError(f"{cache.root}: the disk is full (no space left on device); committed "
                         "shards are intact and the half-written one is removed: free space, "
                         "then run the same command again") from None
    finally:
        bar.close()
    cache.index(refresh=True)
    return summary


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


def _run_split(cache, enc, cfg, split, info, names, chosen, by_shard, summary, commits,
               bar, echo) -> None:
    """Encode every chosen, uncommitted shard of one split; each commits in the writer thread."""
    fps = view_fingerprints(enc, cfg, info)
    have = cache.views()
    for v, fp in fps.items():
        if names.get(v, v) in have:
            cache.check_view(names.get(v, v), enc.dim, fp)  # refuse before any work
    work, done, held, elsewhere = shard_work(cache, split, info.views, names, chosen, by_shard)
    summary["shards_skipped"] += done
    summary["failed_kept"] += held
    summary["shards_elsewhere"] += len(elsewhere)
    # one loader for the whole split: its workers (and their hand-box caches) live across shards
    loader = DataLoader(SegmentFrames([r for _, _, rows in work for r in rows], info.dataset,
                                      info.root, info.views, info.boxes, enc.pixels, cfg,
                                      info.box_format),
                        batch_size=None, num_workers=cfg.workers,
                        pin_memory=enc.device.type == "cuda")
    items = Prefetch(loader, 2 * max(1, cfg.workers))  # received while the batch before encodes
    share = CpuShare(cfg.workers, cfg.threads, items, worker_pids=items.worker_pids) \
        if enc.device.type == "cpu" else None
    try:
        _run_work(cache, enc, cfg, split, info, names, fps, work, items, summary, commits, bar,
                  echo, share)
    finally:
        items.close()
        if share is not None:
            share.restore()


def _run_work(cache, enc, cfg, split, info, names, fps, work, items, summary, commits, bar,
              echo, share) -> None:
    for shard, todo, rows in work:
        full = commits.disk_full()
        if full is not None:  # encoding more shards that cannot be written wastes hours
            raise full
        writers: dict[str, ShardWriter] = {}
        take = Take(items, len(rows))
        try:
            for v in todo:
                writers[v] = ShardWriter(cache, names.get(v, v), shard, enc.dim, fps[v],
                                         producer_config=config_to_dict(cfg),
                                         provenance={"split": split, **info.to_json()},
                                         still_valid=same_inputs(cache.root, split, info)).start()
            stats = _encode_shard(enc, cfg, take, writers, summary, bar, shard, share)
        except KeyboardInterrupt:  # the shard in progress is cleanly not committed
            for w in writers.values():
                w.claim.release()
            errors = commits.drain()  # the shards encoded before it are
            raise Interrupted(
                f"interrupted at shard {shard}: the {summary['shards_done'] - len(errors)} "
                f"shard(s) encoded before it are committed, {shard} is not; run the same "
                "command again to continue") from None
        except Exception as e:  # the shard is marked failed; the next one goes on
            for w in writers.values():
                w.record_failure(e)
            if disk_full(e):
                raise
            take.drain()  # the loader's next items belong to the next shard
            summary["shards_failed"] += 1
            summary["failures"].append(f"{shard}: {type(e).__name__}: {e}")
            echo(f"shard {shard}: FAILED: {type(e).__name__}: {e}")
            continue
        seconds = stats.pop("seconds")
        crop_rows = stats.pop("crop_rows")
        if crop_rows is not None:  # per split: [hand-crop rows, of them full frames]
            got = summary["fallbacks"].setdefault(split, [0, 0])
            got[0], got[1] = got[0] + crop_rows[0], got[1] + crop_rows[1]
        commits.submit(list(writers.values()), stats)
        summary["shards_done"] += 1
        echo(f"shard {shard}: {len(rows)} segments, views {todo}, {seconds:.1f}s "
             f"(decode {stats['decode_s']:.1f}s, encode {stats['encode_s']:.1f}s; writing)")


def _encode_shard(enc, cfg: ExtractConfig, loader, writers: dict[str, ShardWriter],
                  summary: dict, bar, shard: str, share: CpuShare | None = None) -> dict:
    """Decode, encode and hand every segment of one shard (``loader``: its items) to its
    writers; returns stats."""
    todo = list(writers)
    t0 = time.time()
    decode_s = encode_s = 0.0
    packer = Packer(todo, cfg.batch_size)  # whole batches across segments; the last one short
    batch_used = cfg.batch_size

    def encode_view(v, pieces):
        nonlocal batch_used
        embs, batch_used = encode_packed(enc, pieces, batch_used)
        return embs

    def flush(final=False):
        nonlocal encode_s
        t = time.time()
        if share is not None:
            share.adjust()
        for sid, frames, embs in packer.encode(encode_view, final):
            fell = fallbacks.pop(sid, [])
            for v in todo:
                writers[v].add(sid, embs[v].numpy(), frames, fell if crops[v] else None)
            if any(crops.values()):
                crop_rows[0] += len(frames)
                crop_rows[1] += len(fell)
            summary["frames"] += len(frames)
        encode_s += time.time() - t

    decoder = DeviceDecoder(enc.pixels, enc.device) if cfg.decode == "gpu" else None
    crops = {v: w.fingerprint.get("crop") is not None for v, w in writers.items()}
    fallbacks: dict[str, list[int]] = {}  # segment -> frames whose crop is the full frame
    crop_rows = [0, 0]  # hand-crop rows written, of them fallen back
    t = time.time()
    for sid, frames, tensors, err, fell in loader:
        if decoder is not None and not err:
            try:
                tensors = decoder(tensors)                   # {view: uint8 [n, 3, H, W]}
            except XmicError as e:
                err = str(e)
        decode_s += time.time() - t
        bar.update()
        bar.set_postfix(frames_s=f"{summary['frames'] / max(bar.format_dict['elapsed'], 1e-9):.0f}")
        if err:
            for w in writers.values():
                w.fail(sid, err)
            summary["segments_failed"] += 1
            summary["failures"].append(f"{shard}: {sid}: {err}")
        else:
            fallbacks[sid] = fell
            packer.add(sid, frames, tensors)
            if packer.ready():
                flush()
        t = time.time()
    flush(final=True)
    return {"decode_s": round(decode_s, 3), "encode_s": round(encode_s, 3),
            "batch_size_used": batch_used, "seconds": time.time() - t0,
            "crop_rows": crop_rows if any(crops.values()) else None}
