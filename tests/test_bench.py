"""The benchmarks run (at a tiny scale) and report every figure; no timing is asserted."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import REPO


def run_bench(name: str, tmp_path, *args) -> dict:
    """A benchmark as its own process (the ones that measure their memory need that)."""
    out = tmp_path / f"{name}.json"
    subprocess.run([sys.executable, str(REPO / "bench" / f"{name}.py"), *args, "--json", str(out)],
                   check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def run_bench_here(name: str, tmp_path, *args) -> dict:
    """A benchmark's main() in this process (no interpreter and torch start-up to wait for);
    its JSON is written and read back as the script would."""
    import importlib.util
    bench = str(REPO / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / f"{name}.json"
    module.main([*map(str, args), "--json", str(out)])
    return json.loads(out.read_text())


def test_cache_io_bench_smoke(tmp_path):
    r = run_bench("cache_io", tmp_path, "--scale", "0.002", "--repeats", "1", "--modes", "warm")
    assert [b["backend"] for b in r["backends"]] == ["zarr", "hdf5"]
    for b in r["backends"]:
        assert b["segments"] == 134 and b["bytes_written"] >= 134 * 32 * 512 * 2
        assert b["warm"]["load_vs_raw_ratio"] > 0 and b["warm"]["peak_rss_ratio"] > 0


def test_train_bench_smoke(tmp_path):
    r = run_bench_here("train", tmp_path, "--scale", "0.002", "--steps", "2", "--epochs", "1",
                       "--device", "cpu", "--batch-size", "16")  # small steps: half the time
    assert r["segments"] == 134 and r["full_step_samples_per_s"] > 0
    assert r["ratio_full_vs_fwd_bwd"] > 0 and r["epoch_s"] > 0


def test_extract_bench_smoke(tmp_path):
    r = run_bench_here("extract", tmp_path, "--videos", "2", "--frames", "48", "--workers", "0",
                  "--device", "cpu", "--rounds", "2")
    for layout in ("jpeg", "tar", "mp4"):
        m = r["layouts"][layout]
        assert m["failed"] == 0 and m["frames"] > 0 and m["ratio"] > 0
        assert len(m["rounds"]) == 2 and m["ratio_min"] <= m["ratio"] <= m["ratio_max"]
        assert m["ratio"] in [x["ratio"] for x in m["rounds"]]  # a measured round, not a mix
        serial = 1 / (1 / m["bare_encoder_fps"] + 1 / m["decode_only_fps"])
        assert m["bound"] == "serial bound" and abs(m["serial_bound_fps"] - serial) < 0.2
    assert r["layouts"]["tar"]["frames"] == r["layouts"]["jpeg"]["frames"]  # the same frames


def test_slurm_scale_bench_smoke(tmp_path):
    r = run_bench_here("slurm_scale", tmp_path, "--segments", "3000", "--shards", "300")
    assert r["plan"]["segments"] == 3000 and r["plan"]["shards"] == 12 and r["plan"]["seconds"] > 0
    s = r["status"]
    assert s["shards"] == 300 and sum(s["summary"].values()) == 300 and s["warm_seconds"] > 0
    assert min(s["summary"].values()) > 0  # every state is present in the generated cache


def test_grid_bench_smoke(tmp_path):
    r = run_bench_here("grid", tmp_path, "--segments", "60", "--frames", "4", "--seeds", "1",
                  "--epochs", "1", "--stack", "2")
    assert r["runs"] == 2 and r["grid_seconds"] > 0 and r["bare_seconds"] > 0
    assert abs(r["ratio_grid_vs_bare"] - r["grid_seconds"] / r["bare_seconds"]) < 0.01
    st = r["stacked"]
    assert st["members"] == 2 and st["stacked_runs_per_hour"] > 0
    assert st["speedup"] == pytest.approx(st["single_seconds"] / st["stacked_seconds"], abs=0.01)


def test_methods_bench_smoke(tmp_path):
    r = run_bench("methods", tmp_path, "--towers", "tiny", "--classes", "12", "--batches", "4",
                  "--cocoop-batches", "6", "--steps", "1")
    t = r["towers"][0]
    rows = {(x["method"], x["batch"]): x for x in t["rows"]}
    assert set(rows) == {(m, b) for m in ("zeroshot", "linear", "clip-adapter", "xmic", "coop")
                         for b in (4, 6)} | {("cocoop", 6)}
    assert t["cocoop_batch"] == 6 and rows[("coop", 4)]["params"] == 16 * 64 + 1
    assert all(x["step_s"] > 0 and x["peak_mb"] >= 0 for x in t["rows"])
    assert set(t["ratios"]) == {"coop/xmic@4", "coop/xmic@6", "cocoop/xmic@6"}


def test_plan_bench_smoke(tmp_path):
    import pytest

    from helpers import SHARED_DATA
    if not (SHARED_DATA / "epic-kitchens-100-annotations").is_dir():
        pytest.skip(f"real annotations not found at {SHARED_DATA}")
    r = run_bench_here("plan", tmp_path, "--videos", "2")
    assert r["videos"] == 2 and r["frame_files"] > 0
    for key in ("full_frame", "with_box_table"):
        assert r[key]["seconds"] > 0 and r[key]["coverage"]["segments_missing"] == 0
    assert r["with_box_table"]["coverage"]["box_segment_share"] == 1.0


def test_scale_bench_smoke(tmp_path):
    """Two tiny sizes of synthetic videos: every stage measured, exponents fitted, and the
    section of RESULTS.md rendered from them."""
    r = run_bench_here("scale", tmp_path, "--sizes", "1,2", "--max-frames", "600", "--synthetic",
                       "--stages", "plan-boxes")
    assert [s["videos"] for s in r["sizes"]] == [1, 2] and r["sizes"][1]["frames"] > 0
    for s in r["sizes"]:
        assert s["plan-boxes"]["peak_mb"] > 0 and s["plan-boxes"]["grown_mb"] is not None
    assert set(r["exponents"]) == {"plan-boxes"}
    assert r["exponents"]["plan-boxes"]["seconds"] is not None
    from report import scale_section
    text = "\n".join(scale_section(r))
    assert "plan-boxes" in text and "grown memory exponent" in text


def test_significance_bench_smoke(tmp_path):
    r = run_bench_here("significance", tmp_path, "--runs", "8", "--segments", "200",
                       "--samples", "100", "--methods", "2")
    assert r["runs"] == 8 and r["cells"] > 0 and r["ci_top1_seconds"] > 0
    assert r["speedup_vectorised_vs_loop"] > 0 and r["ratio_ci_vs_plain_table"] > 0

