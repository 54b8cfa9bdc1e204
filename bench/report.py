"""Render bench/RESULTS.md from the benchmarks' JSON files: each figure with its goal, the
machine it ran on and the date. GPU files (train_gpu.json, extract_gpu.json) are included only
when present, labelled with their card.

usage: python bench/report.py bench/out > bench/RESULTS.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from xmic.train.methods import METHODS


def load(folder: Path, name: str):
    p = folder / name
    return json.loads(p.read_text()) if p.exists() else None


def main(folder: str) -> None:
    d = Path(folder)
    lines = ["# Benchmark results", "",
             "Written by `bash bench/run_all` (CPU) and `bench/*_gpu.sh` (GPU). Ratios are measured",
             "within one run; absolute figures vary between runs on shared machines.", ""]
    c = load(d, "cache_io.json")
    if c:
        lines += [f"## Cache I/O ({c['segments']} segments x {c['frames_per_segment']} frames x "
                  f"{c['views']} views x {c['dim']}, float16; {c['machine']}, {c['date']})", "",
                  "| backend | write MB/s | page cache | load MB/s | raw read MB/s | load/raw (goal >= 0.5) "
                  "| peak RSS / loaded (goal <= 1.5) |", "|---|---|---|---|---|---|---|"]
        for b in c["backends"]:
            for mode in ("warm", "cold"):
                m = b.get(mode)
                if m:
                    lines.append(f"| {b['backend']} | {b['write_MBps']} | {mode} | {m['load_MBps']} | "
                                 f"{m['raw_read_MBps']} | {m['load_vs_raw_ratio']} | {m['peak_rss_ratio']} |")
        lines.append("")
    for name in ("scale.json", "scale_data.json"):  # media stages; import and train at size
        sc = load(d, name)
        if sc:
            lines += scale_section(sc)
    pl = load(d, "plan.json")
    if pl:
        lines += [f"## Planning with the coverage check ({pl['videos']} videos, {pl['frame_files']:,} "
                  f"frame files of {Path(pl['annotations']).name}; {pl['machine']}, {pl['date']})", "",
                  "| views | segments | shards | plan seconds (goal < 10) |", "|---|---|---|---|"]
        for key in ("full_frame", "with_box_table"):
            r = pl[key]
            lines.append(f"| {key} | {r['segments']} | {r['shards']} | {r['seconds']} |")
        lines.append("")
    s = load(d, "slurm_scale.json")
    if s:
        p, st = s["plan"], s["status"]
        lines += [f"## Planning and status at scale ({s['machine']}, {s['date']})", "",
                  f"- plan {p['segments']:,} EPIC-100 segments into {p['shards']} shards: "
                  f"**{p['seconds']} s** (goal < {p['goal_s']} s)",
                  f"- `xmic slurm status` over {st['shards']:,} shards x {st['views']} views "
                  f"({st['summary']}): **{st['warm_seconds']} s** warm page cache"
                  + (f", **{st['cold_seconds']} s** cold" if "cold_seconds" in st else "")
                  + f" (goal < {st['goal_s']} s)", ""]
    for name, title in (("train_cpu.json", "Training step (CPU)"), ("train_gpu.json", "Training (GPU)")):
        t = load(d, name)
        if t:
            lines += [f"## {title}: {t['device']} {t['card']}, {t['segments']} segments, batch "
                      f"{t['batch_size']}; {t['machine']}, {t['date']}", "",
                      f"- full step {t['full_step_samples_per_s']} samples/s vs bare forward+backward "
                      f"{t['bare_fwd_bwd_samples_per_s']}: ratio **{t['ratio_full_vs_fwd_bwd']}** (goal >= 0.9)",
                      f"- vs forward+backward+optimizer {t['bare_fwd_bwd_opt_samples_per_s']}: ratio "
                      f"{t['ratio_full_vs_fwd_bwd_opt']}"]
            if "ratio_compiled_vs_eager" in t:
                lines.append(f"- torch.compile: full step {t['compiled_step_samples_per_s']} "
                             f"samples/s, x**{t['ratio_compiled_vs_eager']}** the eager step "
                             f"(compiling {t['compile_seconds']} s)")
            if "epoch_s" in t:
                lines.append(f"- {t['epochs']} epoch(s): {t['epochs_s']} s; per epoch at EPIC-100 scale "
                             f"about {t['epoch_s_full_scale_estimate']} s (goal on one H100: 15 epochs <= 60 s)")
            lines.append("")
    for g in (load(d, "grid.json"), load(d, "grid_gpu.json")):
        if not g:
            continue
        lines += [f"## Grid ({g.get('device', 'cpu')}): {g['runs']} runs in one process vs the same runs as bare calls; "
                  f"{g['cpu']}, {g['machine']}, {g['date']}", "",
                  f"- {g['segments']} segments x {g['frames']} frames per cache, {g['epochs']} "
                  f"epochs: grid {g['grid_seconds']} s, bare train + evaluate calls "
                  f"{g['bare_seconds']} s: ratio **{g['ratio_grid_vs_bare']}** (goal <= 1.05); "
                  f"{g['seconds_per_run']} s per run",
                  f"- cache loads: {g['grid_load_seconds']} s in all, {g['loads_saved']} loads "
                  f"saved by loading each (cache, split, views) once; one train-split load "
                  f"{g['one_train_split_load_seconds']} s"]
        st = g.get("stacked")
        if st:
            lines.append(f"- {st['members']} X-MIC seeds as one stacked model: "
                         f"{st['stacked_runs_per_hour']} runs/hour vs {st['single_runs_per_hour']} "
                         f"one by one (x{st['speedup']}, training only, {st['epochs']} epochs)")
        lines.append("")
    sg = load(d, "significance.json")
    if sg:
        lines += [f"## Significance (`grid table --ci`): {sg['runs']} runs; {sg['cpu']}, "
                  f"{sg['machine']}, {sg['date']}", "",
                  f"- {sg['cells']} table cells of {sg['segments']} segments, {sg['samples']} "
                  f"resamples: top-1 with intervals {sg['ci_top1_seconds']} s, HM "
                  f"{sg['ci_hm_seconds']} s, the table alone {sg['table_seconds']} s",
                  f"- one cell's methods and seeds: vectorised {sg['one_cell_vectorised_seconds']}"
                  f" s vs a plain loop over resamples {sg['one_cell_loop_seconds']} s: "
                  f"**x{sg['speedup_vectorised_vs_loop']}**", ""]
    for name in ("extract_tiny.json", "extract_vitb16.json", "extract_gpu.json",
                 "extract_gpu_decode.json"):
        e = load(d, name)
        if e:
            lines += [f"## Extraction: {e['model']} on {e['device']} {e['card']}, {e['precision']}, "
                      f"decode {e.get('decode', 'cpu')}, {e['workers']} workers, batch "
                      f"{e['batch_size']}; {e['machine']}, {e['date']}", "",
                      "| layout | end-to-end frames/s | bare encoder frames/s | decode only frames/s "
                      "| bound frames/s | ratio to the bound (goal >= 0.9) | peak RSS per worker MiB |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {k} | {m['end_to_end_fps']} | {m['bare_encoder_fps']} | "
                      f"{m.get('decode_only_fps', 'not measured')} | "
                      f"{m.get('serial_bound_fps', '') if m.get('bound') == 'serial bound' else ''}"
                      f" ({m.get('bound', 'slower stage')}) | {m['ratio']}{spread(m)} | "
                      f"{m.get('peak_rss_per_worker_mib', '')} |"
                      for k, m in e["layouts"].items()]
            lines.append("")
    for name in ("methods_cpu.json", "methods_gpu.json"):
        m = load(d, name)
        if m:
            lines += methods_section(m)
    if not load(d, "train_gpu.json") and not load(d, "extract_gpu.json"):
        lines += ["## GPU", "", "No GPU figures yet: run `bash bench/gpu.sh` on a GPU machine.", ""]
    print("\n".join(lines))


def scale_section(s: dict) -> list[str]:
    """bench/scale.py: each stage's time and memory per size, and their growth exponents."""
    ann = "real annotations" if s["annotations"] != "synthetic" else "synthetic videos"
    lines = [f"## Growth with the data ({ann}, videos capped at {s['max_frames']} frames; "
             f"{s['machine']}, {s['date']})", "",
             "Peak RSS of each stage in its own process; *grown* is the peak above the stage's "
             "baseline (the process after its imports, torch included). Exponent: slope of "
             "log y on log frames (goal: memory ~0, time ~1). `import` and `train` hold their data by "
             "design: their goal is the memory added per data byte (train: at most ~1.1, the "
             "features once; import: ~0.5, one of two views at a time).", "",
             "| stage | " + " | ".join(f"{r['videos']} videos ({r['frames']} frames)"
                                       for r in s["sizes"]) + " |",
             "|---|" + "---|" * len(s["sizes"])]
    for stage in s["exponents"]:
        cells = []
        for r in s["sizes"]:
            m = r[stage]
            cell = f"{m['seconds']} s, peak {m['peak_mb']} MB, grown {m['grown_mb']} MB"
            if "worker_peak_mb" in m:
                cell += f", worker {m['worker_peak_mb']} MB"
            cells.append(cell)
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines += ["", "| stage | time exponent | peak memory exponent | grown memory exponent | "
              "worker peak exponent | memory added per data byte |", "|---|---|---|---|---|---|"]
    for stage, e in s["exponents"].items():
        per = next((v for k, v in e.items() if k.startswith("grown_per_")), "")
        lines.append(f"| {stage} | {e['seconds']} | {e['peak_mb']} | {e['grown_mb']} | "
                     f"{e.get('worker_peak_mb', '')} | {per} |")
    return lines + [""]


def spread(m: dict) -> str:
    """An extraction ratio's range over the bench's rounds (the ratio is the median round's)."""
    rounds = m.get("rounds") or []
    return f" (median of {len(rounds)} rounds, {m['ratio_min']}-{m['ratio_max']})" \
        if len(rounds) > 1 else ""


def methods_table(t: dict) -> list[str]:
    """One tower's rows of bench/methods.py as a markdown table, then its ratios."""
    out = ["| method | batch | trainable parameters | step ms | peak memory MiB |",
           "|---|---|---|---|---|"]
    for r in sorted(t["rows"], key=lambda r: (r["batch"], METHOD_ORDER.index(r["method"]))):
        out.append(f"| {r['method']} | {r['batch']} | {r['params']:,} | {1000 * r['step_s']:.1f}"
                   f"{' (forward)' if r['params'] == 0 else ''} | {r['peak_mb']:.1f} |")
    out.append("")
    for k, v in t["ratios"].items():
        out.append(f"- **{k}**: step time x{v['step_time']}, peak memory x{v['peak_memory']}, "
                   f"parameters x{v['params']}")
    return out


METHOD_ORDER = list(METHODS)  # the method table's order


def methods_section(m: dict) -> list[str]:
    lines = [f"## Method cost: one training step on the same cached batch, C = {m['classes']}; "
             f"{m['device']} {m['card'] or m['cpu']}, {m['machine']}, {m['date']}", "",
             "Peak memory is the step's own (GPU: allocated; CPU: resident, above the process "
             "before the step). Zero-shot has no parameters: its row is one forward pass.", ""]
    for t in m["towers"]:
        lines += [f"### Text tower {t['tower']} (width {t['width']}, D = {t['dim']}); CoCoOp at "
                  f"batch {t['cocoop_batch']} (tried {t['cocoop_batches_tried']})", ""]
        lines += methods_table(t) + [""]
    return lines


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out")
