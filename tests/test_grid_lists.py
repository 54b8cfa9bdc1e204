"""Class lists of a grid are read at plan, before anything trains: a missing or mismatched
list is refused naming it (and the taxonomy version behind a mismatch); lists X-MIC never
released are derived into the grid folder by the exact-name rule on request, recorded as
derived; a trained grid is re-scored with other lists without training again."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import run_xmic
from test_grid import world  # noqa: F401  (the module-scoped generated world)
from xmic.evaluate.classes import ClassSplitError, read_class_splits, taxonomy_hint

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def recipe(tmp_path, world) -> Path:
    r = {"caches": {"epic": str(world["epic"]), "ego4d": str(world["ego4d"])},
         "sources": {"epic": "train"}, "targets": {"epic": "validation", "ego4d": "val"},
         "labels": ["noun"], "methods": {"zeroshot": {}}, "seeds": [0],
         "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "heldout_fraction": 0}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


def lists(folder: Path, common, novel, crit="exact") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / f"ego_epic_common_{crit}_noun.txt").write_text("\n".join(common) + "\n")
    (folder / f"ego_epic_non_common_{crit}_noun.txt").write_text("\n".join(novel) + "\n")
    return folder


def test_lists_are_checked_at_plan_derived_on_request_and_rescored(tmp_path, world):
    g = tmp_path / "g"
    other = tmp_path / "only-epic-target"  # lists of another pair only
    other.mkdir()
    (other / "epic_ego_common_noun.txt").write_text("class2\n")
    cp = run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world), "--class-splits",
                  other, check=False)
    assert cp.returncode == 2 and "1 cross-dataset evaluation(s) of this grid cannot read" in cp.stderr
    assert "no ego_epic_(non_)common_*_noun.txt lists for target ego4d, source epic" in cp.stderr
    assert "--derive-class-splits" in cp.stderr and "nothing was trained" in cp.stderr
    assert not g.exists()  # refused before anything was written
    cp = run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world), "--class-splits",
                  tmp_path / "nope", check=False)
    assert cp.returncode == 2 and "nope: not a folder" in cp.stderr and not g.exists()
    bad = lists(tmp_path / "bad", ["class2", "fridge"], ["door", "phone"])
    cp = run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world), "--class-splits", bad,
                  check=False)
    assert cp.returncode == 2 and "1 name(s) in the exact lists for ego4d/noun match no class" in cp.stderr
    assert "(or match several): fridge" in cp.stderr and not g.exists()
    # derived: the exact-name rule, written into the grid and recorded
    cp = run_xmic("grid", "plan", g, "--recipe", recipe(tmp_path, world), "--class-splits",
                  other, "--derive-class-splits")
    assert "derived class lists (exact: a target class is shared when" in cp.stdout, cp.stdout
    assert (g / "class-splits" / "ego_epic_common_exact_noun.txt").read_text() == "class2\nclass3\n"
    assert (g / "class-splits" / "ego_epic_non_common_exact_noun.txt").read_text() == "door\nphone\n"
    record = json.loads((g / "class-splits" / "derived.json").read_text())
    assert "derived, not released" in record["rule"] and len(record["files"]) == 2
    assert json.loads((g / "grid.json").read_text())["class_lists"]["files"] == record["files"]
    run_xmic("grid", "run", g)
    run = g / "runs" / "epic-noun-zeroshot-seed0"
    m = json.loads((run / "eval" / "ego4d-val" / "metrics.json").read_text())
    assert m["class_splits"] == str((g / "class-splits").resolve())
    assert "shared_exact" in m and "shared_semantic" not in m
    table = run_xmic("grid", "table", g, "--metric", "shared").stdout
    assert "Derived class lists (exact: a target class is shared when" in table, table
    # rescored with released-style lists (a semantic criterion too), no training again
    good = lists(lists(tmp_path / "good", ["class2", "class3"], ["door", "phone"]),
                 ["class2", "class3", "door"], ["phone"], crit="semantic")
    ck = (run / "checkpoint.pt").stat().st_mtime_ns
    cp = run_xmic("grid", "rescore", g, "--class-splits", good)
    assert "rescored 1 evaluation(s); 0 run(s) not trained yet" in cp.stdout, cp.stdout
    m = json.loads((run / "eval" / "ego4d-val" / "metrics.json").read_text())
    assert m["class_splits"] == str(good.resolve()) and "shared_semantic" in m
    assert (run / "checkpoint.pt").stat().st_mtime_ns == ck
    assert json.loads((g / "grid.json").read_text())["recipe"]["class_splits"] == str(good.resolve())
    assert "class_lists" not in json.loads((g / "grid.json").read_text())
    table = run_xmic("grid", "table", g, "--metric", "HM", "--criterion", "semantic").stdout
    assert "HM (%), semantic shared/novel classes" in table and f"Class lists: {good.resolve()}." in table
    assert run_xmic("grid", "status", g).returncode == 0  # the rewritten plan loads


def test_a_taxonomy_version_mismatch_is_named():
    assert "Ego4D FHO v1 taxonomy, but X-MIC's lists name Ego4D FHO v2" in taxonomy_hint("ego4d", "noun", 478)
    assert taxonomy_hint("ego4d", "noun", 521) == "" and taxonomy_hint("epic", "noun", 300) == ""


@pytest.mark.skipif(not (SHARED / "xmic-anno").is_dir(), reason=f"real lists not found at {SHARED}")
def test_the_released_lists_against_the_v1_taxonomy_name_the_version():
    tax = json.loads((SHARED / "ego4d-fho-lta-taxonomy" / "fho_lta_taxonomy.json").read_text())
    with pytest.raises(ClassSplitError, match=r"match no class .* the Ego4D FHO v1 taxonomy, but "
                                              r"X-MIC's lists name Ego4D FHO v2 classes"):
        read_class_splits(SHARED / "xmic-anno", "ego4d", "epic", "noun", tax["nouns"])


def test_missing_egtea_lists_say_none_were_released(tmp_path):
    with pytest.raises(ClassSplitError, match=r"no egtea_epic_\(non_\)common_\*_noun.txt lists "
                                              r"for target egtea, source epic; X-MIC released no "
                                              r"lists for egtea as a target"):
        read_class_splits(tmp_path, "egtea", "epic", "noun", ["knife"])
    with pytest.raises(ClassSplitError, match=r"source ego4d$"):  # released for EPIC: no hint
        read_class_splits(tmp_path, "epic", "ego4d", "noun", ["knife"])


def test_a_split_with_shards_left_to_extract_is_refused_at_plan(tmp_path, world):
    """A run would otherwise train (or be scored) on the extracted part only, silently."""
    import shutil
    from xmic.cache import Cache
    half = tmp_path / "ego4d-half"
    shutil.copytree(world["ego4d"], half)
    c = Cache.open(half)
    shard = c.shards("val")[0]
    shutil.rmtree(half / "views" / "hand_crop" / shard)
    r = yaml.safe_load(recipe(tmp_path, world).read_text())
    r["caches"]["ego4d"] = str(half)
    (tmp_path / "half.yaml").write_text(yaml.safe_dump(r))
    cp = run_xmic("grid", "plan", tmp_path / "g", "--recipe", tmp_path / "half.yaml", check=False)
    assert cp.returncode == 2 and f"view hand_crop of split val has 1 of 2 shard(s) not extracted " \
                                  f"({shard}" in cp.stderr, cp.stderr
    assert not (tmp_path / "g").exists()
