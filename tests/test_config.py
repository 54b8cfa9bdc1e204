"""Typed configs: YAML + overrides, unknown keys and bad values are errors, Python tags refused."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from xmic.cache.config import CacheConfig
from xmic.config import ConfigError, config_to_dict, dump_config, load_config


@dataclass(frozen=True)
class Optim:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass(frozen=True)
class Run:
    label: Literal["noun", "verb"] = "noun"
    epochs: int = 15
    optim: Optim = field(default_factory=Optim)
    note: str | None = None


def test_defaults_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 3\noptim:\n  lr: 0.001\n")
    cfg = load_config(Run, p, ["label=verb", "optim.betas=[0.8, 0.9]", "note=hello"])
    assert cfg == Run("verb", 3, Optim(1e-3, (0.8, 0.9)), "hello")
    assert config_to_dict(cfg)["optim"]["betas"] == [0.8, 0.9]
    assert load_config(Run, None, []) == Run()
    assert load_config(Run, None, ["optim.lr=3e-3"]).optim.lr == 0.003  # YAML 1.1 reads a string
    assert "epochs: 3" in dump_config(cfg)


@pytest.mark.parametrize("override,msg", [
    ("epoch=3", "unknown key 'epoch'"),
    ("optim.momentum=1", "unknown key 'momentum'"),
    ("label=action", "'action' is not one of ['noun', 'verb']"),
    ("epochs=ten", "expected an integer"),
    ("epochs=1.5", "expected an integer"),
    ("optim.betas=[1]", "expected 2 items"),
    ("novalue", "expected key=value"),
])
def test_bad_overrides(override, msg):
    with pytest.raises(ConfigError, match=__import__("re").escape(msg)):
        load_config(Run, None, [override])


def test_yaml_python_tag_and_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("label: !!python/object/apply:os.system ['echo x']\n")
    with pytest.raises(ConfigError, match="not a plain YAML config"):
        load_config(Run, p)
    p.write_text("lbl: noun\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'lbl'"):
        load_config(Run, p)
    p.write_text("- a\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(Run, p)


def test_cache_config_validation():
    assert load_config(CacheConfig, None, ["backend=hdf5", "dtype=float32"]).backend == "hdf5"
    with pytest.raises(ConfigError, match=r"shard_segments: 0 is outside the allowed range \[1, "):
        load_config(CacheConfig, None, ["shard_segments=0"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(CacheConfig, None, ["backend=n5"])


def test_each_method_records_its_own_model_group_and_old_keys_migrate(tmp_path):
    """A method's hyper-parameters live in its group of the model config; a run records only
    the groups its method reads; the flat keys of earlier releases (YAML, --set, a recorded
    config) land in today's groups."""
    from xmic.train.config import TrainConfig, todays_record
    linear = config_to_dict(load_config(TrainConfig, None, ["method=linear"]))["model"]
    assert not {"xmic", "clip_adapter", "prompt", "cocoop"} & set(linear)
    xmic = config_to_dict(load_config(TrainConfig, None, ["method=xmic"]))["model"]
    assert xmic["xmic"]["alpha"] == 2.0 and "prompt" not in xmic and "clip_adapter" not in xmic
    cocoop = config_to_dict(load_config(TrainConfig, None, ["method=cocoop"]))["model"]
    assert set(cocoop) & {"prompt", "cocoop", "xmic"} == {"prompt", "cocoop"}
    p = tmp_path / "old.yaml"
    p.write_text("method: cocoop\nmodel:\n  prompt_init: a video of\n  meta_net_ratio: 0.125\n"
                 "log_tensorboard: true\n")
    old = load_config(TrainConfig, p, ["model.heads=2", "model.clip_adapter_ratio=0.5"])
    new = load_config(TrainConfig, None, [
        "method=cocoop", "model.prompt.init=a video of", "model.cocoop.meta_net_ratio=0.125",
        "log.tensorboard=true", "model.xmic.heads=2", "model.clip_adapter.ratio=0.5"])
    assert old == new
    flat = {"method": "xmic", "model": {"alpha": 1.0, "heads": 2, "prompt_init": "x"}}
    assert todays_record(flat, "ck")["model"]["xmic"] == {
        **xmic["xmic"], "alpha": 1.0, "heads": 2}
    with pytest.raises(ConfigError, match="unknown key 'alpah'"):
        load_config(TrainConfig, None, ["model.xmic.alpah=1"])
