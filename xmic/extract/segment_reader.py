"""The reader of extraction: one planned segment's sampled frames, decoded, cropped and resized.

Input: a split's planned rows, its ``SplitPlan`` (dataset kind, media root, views, box source
and format), the encoder's pixel transform and the ``ExtractConfig`` (sampling, crop
thresholds, ``decode``). Output: ``SegmentFrames``, a torch ``Dataset`` whose item per segment is
(segment_id, frame numbers, {view: uint8 [n, 3, H, W]} in one storage, or with ``decode: gpu``
a ``JpegSegment`` of bytes and boxes, error or None, the frames whose hand crop fell back to the
full frame). A segment that cannot be read is an error string, never zeros. Each DataLoader
worker opens the split's box source once, on its first hand-crop segment, and reads frame tars
through the member indexes the plan stored (``index_store``); what a worker keeps (boxes of a
few videos, a few archive indexes and descriptors) is bounded, not the split.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import torch
from torch.utils.data import Dataset

from xmic.cache.datasets import dataset
from xmic.cache.sampling import frames_to_store, rule_of
from xmic.config import XmicError
from xmic.extract.boxes import open_boxes
from xmic.extract.config import ExtractConfig
from xmic.extract.device_decode import jpeg_segment
from xmic.extract.frame_archive import use_index_store
from xmic.extract.media import frame_source
from xmic.extract.plan_record import SplitPlan
from xmic.extract.readers import read_frames
from xmic.extract.views import view_tensors


class SegmentFrames(Dataset):
    def __init__(self, rows: list[dict], info: SplitPlan, transform, cfg: ExtractConfig,
                 index_store: Path | None = None):
        # the rows as one Arrow table: a forked worker shares its buffers (a list of dicts is
        # copied page by page into every worker as reference counts touch it)
        self.rows = pa.Table.from_pylist(rows) if rows else pa.table({})
        self.info, self.transform, self.cfg = info, transform, cfg
        self.index_store = index_store  # the cache's frame-tar indexes, built at plan
        self._boxes = None
        self._store_set = False

    def __len__(self):
        return self.rows.num_rows

    def boxes(self):
        if self._boxes is None:
            c, info = self.cfg, self.info
            self._boxes = open_boxes(info.boxes, c.hand_score, c.object_score, c.min_box_px,
                                     info.box_format, trimmed=dataset(info.dataset).trimmed)
        return self._boxes

    def __getitem__(self, i):
        if not self._store_set:  # in this (worker) process
            use_index_store(self.index_store)
            self._store_set = True
        r, c, kind = self.rows.slice(i, 1).to_pylist()[0], self.cfg, self.info.dataset
        fell: list[int] = []  # hand-crop frames that fell back to the full frame
        try:
            src = frame_source(kind, Path(self.info.root), r["video_id"], r["start_frame"])
            frames = frames_to_store(rule_of(kind), r["start_frame"], r["stop_frame"],
                                     c.sampling, c.per_bin, c.bins)
            views = r.get("views", self.info.views)  # a shard may need only some views
            boxes = self.boxes() if "hand_crop" in views else None
            span = (r["start_frame"], r["stop_frame"])

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
