"""Look at what was encoded: a contact sheet of one segment's frames and hand crops.

Inputs: a cache planned (and extracted) by ``xmic extract``, a segment id, the crop view
(``hand_crop`` or a renamed one). The media, the box source and its numbering come from the
plan (``extract_plan.json``); the thresholds and the stored frames from the view's shard marker
and rows (the plan's settings and sampling while the shard is not extracted). Output:
``contact_sheet`` -> (PNG bytes, a summary): per shown frame the full frame with the crop box
drawn, the crop beside it, the frame number and whether the crop fell back to the full frame;
the title names the segment, the box source and its thresholds, and the fallbacks the marker
recorded. ``fallback_segments`` lists the segments whose crops fell back most. Nothing is
written into the cache.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from xmic.cache import Cache
from xmic.cache.datasets import dataset
from xmic.cache.sampling import frames_to_store, rule_of
from xmic.config import XmicError
from xmic.extract.boxes import open_boxes
from xmic.extract.media import frame_source
from xmic.extract.plan_record import ExtractPlan
from xmic.extract.readers import read_frames

PAIRS_PER_ROW = 4
CROP_KEYS = ("hand_score", "object_score", "min_box_px", "sampling", "per_bin", "bins")


class SheetError(XmicError):
    pass


def crop_view(cache: Cache, view: str | None) -> str:
    """The view to show: the one named, else the one view made with a crop rule."""
    views = cache.views()
    crops = sorted(v for v, rec in views.items() if rec["fingerprint"].get("crop") is not None)
    if view is None:
        if not crops:
            raise SheetError(f"{cache.root}: no hand-crop view is extracted yet (views: "
                             f"{sorted(views) or 'none'}); run `xmic extract run` first")
        return "hand_crop" if "hand_crop" in crops else crops[0]
    if view not in crops:
        raise SheetError(f"{cache.root}: view {view!r} is not a hand-crop view (those are "
                         f"{crops or 'none'})")
    return view


def fallback_segments(cache_dir: Path, view: str | None = None, n: int = 4) -> list[str]:
    """The ``n`` segments whose crops fell back to the full frame most (from the markers)."""
    cache = Cache.open(cache_dir)
    view = crop_view(cache, view)
    counts: dict[str, int] = {}
    for shard in cache.committed(view):
        fell = cache.marker(view, shard).get("crop_fallbacks") or {}
        counts.update({s: len(f) for s, f in fell.get("segments", {}).items()})
    return sorted(counts, key=lambda s: (-counts[s], s))[:n]


def _segment(cache: Cache, segment_id: str) -> dict:
    plan = cache.plan()
    rows = plan.filter(pc.equal(plan["segment_id"], segment_id)).to_pylist()
    if not rows:
        raise SheetError(f"{cache.root}: no segment {segment_id!r} in the plan; see `xmic cache "
                         "info` for its splits, or pick one with --fallbacks")
    return rows[0]


def _stored(cache: Cache, view: str, seg: dict, settings: dict) -> tuple[list[int], dict, list]:
    """(frames stored for the segment, the settings they were made with, recorded fallbacks)."""
    shard = seg["shard"]
    if shard in cache.committed(view):
        marker = cache.marker(view, shard)
        rows = cache.shard_rows(view, shard)
        row = rows.filter(pc.equal(rows["segment_id"], seg["segment_id"])).to_pylist()[0]
        producer = marker.get("config", {}).get("producer", {})
        made = {k: producer.get(k, settings.get(k)) for k in CROP_KEYS}
        if row["status"] != "ok":
            raise SheetError(f"segment {seg['segment_id']} failed when extracted: {row['error']}")
        recorded = None  # shards written before fallbacks were counted
        if "crop_fallbacks" in marker:
            recorded = marker["crop_fallbacks"]["segments"].get(seg["segment_id"], [])
        return list(row["frame_indices"]), made, recorded
    frames = frames_to_store(rule_of(cache.dataset), seg["start_frame"], seg["stop_frame"],
                             settings.get("sampling", "per_bin"), settings.get("per_bin", 4),
                             settings.get("bins", 16))
    return frames, settings, None


def contact_sheet(cache_dir: Path, segment_id: str, view: str | None = None,
                  shown: int = 16) -> tuple[bytes, dict]:
    """(PNG bytes, summary) of one segment: at most ``shown`` of its stored frames, evenly."""
    cache = Cache.open(cache_dir)
    view = crop_view(cache, view)
    seg = _segment(cache, segment_id)
    info = ExtractPlan.load(cache.root).splits[seg["split"]]
    if not info.boxes:
        raise SheetError(f"{cache.root}: split {seg['split']} was planned without boxes")
    frames, made, recorded = _stored(cache, view, seg, {"hand_score": 0.8, "object_score": 0.01,
                                                         "min_box_px": 1.0,
                                                         **info.settings})
    pick = np.unique(np.linspace(0, len(frames) - 1, min(shown, len(frames))).round().astype(int))
    chosen = [frames[i] for i in pick]
    kind = info.dataset
    src = frame_source(kind, Path(info.root), seg["video_id"], seg["start_frame"])
    boxes = open_boxes(info.boxes, made["hand_score"], made["object_score"], made["min_box_px"],
                       info.box_format, trimmed=dataset(kind).trimmed)
    span = (seg["start_frame"], seg["stop_frame"])
    images = read_frames(src, chosen)
    cells = [(f, im, boxes.box(seg["video_id"], segment_id, f, im.width, im.height, span))
             for f, im in zip(chosen, images)]
    summary = {"segment_id": segment_id, "video_id": seg["video_id"], "split": seg["split"],
               "view": view, "frames_stored": len(frames), "frames_shown": chosen,
               "fell_back_shown": [f for f, _, b in cells if b is None],
               "fallbacks_recorded": recorded, "boxes": info.boxes,
               "box_format": info.box_format,
               "frame_keys": boxes.numbering(seg["video_id"], span),
               "thresholds": {k: made[k] for k in ("hand_score", "object_score", "min_box_px")}}
    return _draw(cells, summary), summary


def _draw(cells: list, s: dict) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone
    from matplotlib.patches import Rectangle
    rows = -(-len(cells) // PAIRS_PER_ROW)
    fig = Figure(figsize=(2.2 * 2 * PAIRS_PER_ROW, 2.0 * rows + 1.2))
    axes = fig.subplots(rows, 2 * PAIRS_PER_ROW, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (frame, im, box) in enumerate(cells):
        full, crop = axes[i // PAIRS_PER_ROW, 2 * (i % PAIRS_PER_ROW):][:2]
        full.imshow(np.asarray(im))
        if box is None:
            full.set_title(f"frame {frame}\nFELL BACK: full frame", fontsize=7, color="tab:red")
            crop.imshow(np.asarray(im))
        else:
            l, t, r, b = box
            full.add_patch(Rectangle((l, t), r - l, b - t, fill=False, lw=1.5, ec="lime"))
            full.set_title(f"frame {frame}", fontsize=7)
            crop.imshow(np.asarray(im.crop(box)))
        crop.set_title("hand crop", fontsize=7, color="tab:red" if box is None else "black")
    rec = s["fallbacks_recorded"]
    recorded = (f"{len(rec)} of {s['frames_stored']} stored frames fell back when extracted"
                if rec is not None else "no fallbacks recorded (not extracted yet, or earlier)")
    th = s["thresholds"]
    keys = f", pickles numbered by {s['frame_keys']}" if s["frame_keys"] else ""
    fig.suptitle(f"{s['segment_id']} ({s['split']}, video {s['video_id']}, view {s['view']}): "
                 f"{len(s['frames_shown'])} of {s['frames_stored']} stored frames, "
                 f"{len(s['fell_back_shown'])} shown fell back; {recorded}\n"
                 f"boxes: {s['box_format']} {s['boxes']}{keys}; hand_score > "
                 f"{th['hand_score']}, object_score >= {th['object_score']}, min_box_px "
                 f"{th['min_box_px']}", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
