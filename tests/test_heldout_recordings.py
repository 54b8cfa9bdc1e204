"""Held-out selection keeps a recording whole: an Ego4D video's clips, an EGTEA session's clips,
an EPIC video; plans of earlier releases (no recording column) read each video as its own."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import segment_columns
from xmic.cache import Cache, CacheConfig
from xmic.cache.datasets.ego4d import read_ego4d
from xmic.cache.index import make_plan
from xmic.cache.paths import SEGMENTS
from xmic.train.data import heldout_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def ego4d_clips(path: Path, videos: int = 6, clips_per_video: int = 3) -> tuple[Path, Path]:
    clips = []
    for v in range(videos):
        for c in range(clips_per_video):
            for a in range(2):
                clips.append({"clip_uid": f"clip{v}{c}", "video_uid": f"video{v}", "action_idx": a,
                              "action_clip_start_sec": a, "action_clip_end_sec": a + 0.9,
                              "action_clip_start_frame": 30 * a, "action_clip_end_frame": 30 * a + 27,
                              "verb_label": 0, "noun_label": 1})
    ann = path / "fho_lta_train.json"
    ann.write_text(json.dumps({"clips": clips}))
    tax = path / "taxonomy.json"
    tax.write_text(json.dumps({"verbs": ["take"], "nouns": ["cup", "lid"]}))
    return ann, tax


def test_ego4d_holds_out_whole_videos_not_clips(tmp_path):
    ann, tax = ego4d_clips(tmp_path)
    segs, _ = read_ego4d(ann, "train", tax)
    cols = segs.columns
    assert cols["video_id"][:6] == ["clip00", "clip00", "clip01", "clip01", "clip02", "clip02"]
    assert set(cols["recording_id"]) == {f"video{v}" for v in range(6)}
    for fraction in (0.1, 0.34, 0.5):
        train, held = heldout_split(cols["recording_id"], fraction)
        held_videos = {cols["recording_id"][i] for i in held}
        train_videos = {cols["recording_id"][i] for i in train}
        assert held_videos and not held_videos & train_videos
        # every clip of a held-out video is held out, with all its segments
        held_clips = {cols["video_id"][i] for i in held}
        assert held_clips == {f"clip{v[-1]}{c}" for v in held_videos for c in range(3)}
        assert len(held) == 6 * len(held_videos)
    # a clip without video_uid is its own recording
    data = json.loads(ann.read_text())
    del data["clips"][0]["video_uid"]
    ann.write_text(json.dumps(data))
    segs, _ = read_ego4d(ann, "train", tax)
    assert segs.columns["recording_id"][0] == "clip00"


def test_a_plan_of_an_earlier_release_reads_each_video_as_a_recording(tmp_path):
    cache = Cache.create(tmp_path / "c", "epic", CacheConfig(shard_segments=4))
    cols = segment_columns(6)
    cols["video_id"] = ["P01_01", "P01_01", "P01_02", "P01_02", "P01_03", "P01_03"]
    cache.add_plan(make_plan(cols, 4, "train"))
    assert cache.plan()["recording_id"].to_pylist() == cols["video_id"]  # default: the video
    old = pq.read_table(tmp_path / "c" / SEGMENTS).drop_columns(["recording_id"])
    pq.write_table(old, tmp_path / "c" / SEGMENTS)
    reopened = Cache.open(tmp_path / "c")
    assert reopened.plan()["recording_id"].to_pylist() == cols["video_id"]
    assert reopened.index()["recording_id"].to_pylist() == cols["video_id"]
    # and a split added today merges with the old plan
    reopened.add_plan(make_plan(segment_columns(2, "validation"), 4, "validation"))
    assert Cache.open(tmp_path / "c").plan().num_rows == 8
    # planning the old split again from annotations that group it (Ego4D's video_uid) is no
    # clash: the same segments, now with their recordings
    grouped = {**cols, "recording_id": ["A", "A", "A", "B", "B", "B"]}
    Cache.open(tmp_path / "c").add_plan(make_plan(grouped, 4, "train"))
    plan = Cache.open(tmp_path / "c").plan()
    assert plan["recording_id"].to_pylist() == ["A", "A", "A", "B", "B", "B", "P01_01", "P01_01"]
    moved = {**cols, "start_frame": [1, 2, 3, 4, 5, 6]}
    with pytest.raises(Exception, match="already in this cache with other segments"):
        Cache.open(tmp_path / "c").add_plan(make_plan(moved, 4, "train"))


def test_a_run_holds_out_recordings_and_says_so(tmp_path):
    from train_data import make_train_cache
    from xmic.train.data import load_bank
    cache = make_train_cache(tmp_path / "c", n=40, videos=8)
    bank = load_bank(cache, "train", ["hand_crop"], "noun", 4)
    # make_train_cache's segments name their video as their recording
    assert bank.recordings == [f"V{i % 8:02d}" for i in range(40)]
    train, held = heldout_split(bank.recordings, 0.25)
    assert {bank.recordings[i] for i in held}.isdisjoint({bank.recordings[i] for i in train})
    assert len({bank.recordings[i] for i in held}) == 2


@pytest.mark.skipif(not (SHARED / "egtea-gaze-plus-split1-parsed").exists(),
                    reason="shared EGTEA annotations absent")
def test_egtea_holds_out_whole_sessions():
    from xmic.cache.datasets.egtea import read_egtea
    segs, _ = read_egtea(SHARED / "egtea-gaze-plus-split1-parsed" / "train_split1_parsed.csv",
                         "train")
    rec = segs.columns["recording_id"]
    assert rec[0] == "OP01-R01-PastaSalad" and len(set(rec)) < len(rec) / 20
    train, held = heldout_split(rec, 0.1)
    assert {rec[i] for i in held}.isdisjoint({rec[i] for i in train})
    assert np.isclose(len({rec[i] for i in held}), round(0.1 * len(set(rec))))


def test_a_vocabulary_records_a_packaged_model_config_by_name(tmp_path):
    import shutil

    from xmic.towers.encoders import TINY_CONFIG
    from xmic.towers.text_tower import _model_arg, tower_source
    src = tower_source(str(TINY_CONFIG), "random")
    assert src == {"model": "packaged:xmic-tiny-quickgelu.json", "weights": "random"}
    assert _model_arg("xmic-tiny-quickgelu", src["model"]) == str(TINY_CONFIG)
    mine = tmp_path / "mine.json"  # a user's own config stays where the user keeps it
    shutil.copy(TINY_CONFIG, mine)
    assert tower_source(str(mine), str(mine))["model"] == str(mine.resolve())
    assert not any(str(TINY_CONFIG.parent) in v for v in src.values())
