"""Class names as the released dataset code prompts them (transcribed rules, checked on the real
class lists when ../shared/data is there), and vocabularies in which two classes would share one
prompt refused, naming both."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from helpers import SHARED_DATA, run_xmic
from train_data import make_train_cache, vocab_fp
from xmic.cache import CacheError
from xmic.cache.datasets import prompt_names
from xmic.cache.vocab import add_vocab, load_vocab

EGO4D_FIXES = {"bat_(sports)": "bat sports", "bat_(tool)": "bat tool", "nut_(tool)": "nut tool",
               "nut_(food)": "nut", "chip_(wood,_metal)": "chip metal",
               "chip_(wood'_metal),": "chip wood", "pot_(planter)": "planter", "chip_(food)": "chip",
               "pot": "pot", "potato": "potato", "spoon_(spoon,_spoonful)": "spoon",
               "adjust_(regulate,_increase/reduce,_change)": "adjust"}


def test_the_released_rules_per_dataset():
    assert prompt_names("ego4d", list(EGO4D_FIXES)) == list(EGO4D_FIXES.values())
    assert prompt_names("egtea", ["Clean/Wipe", "Divide/Pull Apart", "eating_utensil"]) == [
        "clean wipe", "divide pull apart", "eating utensil"]
    assert prompt_names("epic", ["pan:dust", "turn-on", "use-to", "board:chopping", "end-of"]) == [
        "dust pan", "turn on", "use", "chopping board", "end"]
    assert prompt_names("csv", ["Chopping_Board"]) == ["chopping board"]


def test_a_vocabulary_with_two_equal_prompts_is_refused(tmp_path):
    cache = make_train_cache(tmp_path / "c", n=8, dataset="ego4d", class_names=[
        "bat_(sports)", "nut_(tool)", "nut_(food)", "door"])
    with pytest.raises(CacheError, match=r"classes 'nut' and 'nut_\(food\)' both become the prompt "
                                         r"'a photo of a nut'"):
        add_vocab(cache, "noun.photo", ["bat_(sports)", "nut", "nut_(food)", "door"],
                  np.ones((4, 32)), "a photo of a {}", vocab_fp(), replace=True)
    emb = tmp_path / "e.npy"
    np.save(emb, np.ones((2, 32), np.float32))
    (tmp_path / "classes.txt").write_text("cup_(cup,_mug)\ncup\n")
    cp = run_xmic("cache", "import-text", cache.root, "--name", "other", "--classes",
                  tmp_path / "classes.txt", "--embeddings", emb, check=False)
    assert cp.returncode == 2 and "both become the prompt 'cup'" in cp.stderr, cp.stderr
    v = add_vocab(cache, "ok", ["bat_(sports)", "bat_(tool)"], np.ones((2, 32)), "{}", vocab_fp(),
                  replace=True)
    meta = json.loads((cache.root / "vocab" / "ok" / "vocab.json").read_text())
    assert meta["names"] == ["bat sports", "bat tool"] and meta["prompts"] == meta["names"]
    assert load_vocab(cache, "ok").names == v.names == ["bat sports", "bat tool"]


def _shared(path: str):
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"{p} not available (real annotation data lives beside the checkout)")
    return p


def test_every_real_vocabulary_has_distinct_prompts():
    counts = {}
    epic = _shared("epic-kitchens-100-annotations")
    for label in ("noun", "verb"):
        keys = [r["key"] for r in csv.DictReader(open(epic / f"EPIC_100_{label}_classes.csv"))]
        counts[f"epic {label}"] = (len(keys), len(set(prompt_names("epic", keys))))
    anno = _shared("xmic-anno")
    for label in ("noun", "verb"):  # Ego4D v2 names: common + non-common lists
        names = [ln.strip() for part in ("common", "non_common")
                 for ln in open(anno / f"ego_epic_{part}_{label}.txt") if ln.strip()]
        counts[f"ego4d {label}"] = (len(names), len(set(prompt_names("ego4d", names))))
    egtea = _shared("egtea-gaze-plus-split1-parsed")
    from xmic.cache.datasets import read_egtea
    _, vocab = read_egtea(egtea / "test_split1_parsed.csv", "test")
    for label in ("noun", "verb"):
        counts[f"egtea {label}"] = (len(vocab[label]), len(set(prompt_names("egtea", vocab[label]))))
    assert counts == {"epic noun": (300, 300), "epic verb": (97, 97), "ego4d noun": (521, 521),
                      "ego4d verb": (117, 117), "egtea noun": (53, 53), "egtea verb": (19, 19)}
