"""The extraction stage's config (``ExtractConfig``): model, weights, sampling, crop thresholds.

Input: YAML file and ``--set key=value`` overrides. Output: a frozen dataclass, written into
every shard marker (``config.producer``) and reflected in each view's fingerprint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xmic.cache.vocab import template_problem
from xmic.config import bounded

VIEWS = ("full_frame", "hand_crop")  # the views extraction writes (``rename`` may rename them)


@dataclass(frozen=True)
class ExtractConfig:
    model: str = "ViT-B-16-quickgelu"  # open_clip name, model-config JSON path, or timm:NAME
    weights: str = ""                  # FILE, local-dir:DIR, a tag (openai), hf-hub:ID, or random
    seed: int = bounded(0, 0, 2**32 - 1)                     # for random weights
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp16"  # GPUs; the CPU always runs fp32
    decode: Literal["cpu", "gpu"] = "cpu"  # gpu: JPEGs decoded and resized on the CUDA device
    batch_size: int = bounded(256, 1, 1 << 16)             # frames per encoder batch (halved on CUDA out-of-memory)
    workers: int = bounded(4, 0, 512)                  # DataLoader processes that decode, crop and preprocess
    threads: int = bounded(0, 0, 512)  # CPU encoder threads; 0: shared with the workers (all cores when they are ahead)
    sampling: Literal["all", "per_bin"] = "per_bin"
    per_bin: int = bounded(4, 1, 4096)                  # candidates per bin: 4 x 16 = 64 frames per segment at most
    bins: int = bounded(16, 1, 1024)
    hand_score: float = bounded(0.8, 0.0, 1.0)
    object_score: float = bounded(0.01, 0.0, 1.0)
    min_box_px: float = bounded(1.0, 0.0, 1e6)
    # write planned views under other names, e.g. [hand_crop=dino_hand]: Encoder II views
    rename: tuple[str, ...] = ()
    prompt: str = "{}"                 # X-MIC: the bare class name -> vocabulary "noun"
    zeroshot_prompt: str = "a photo of a {}"  # -> vocabulary "noun.photo"

    def view_names(self) -> dict[str, str]:
        out = {}
        for item in self.rename:
            src, sep, dst = item.partition("=")
            if not sep or not dst:
                raise ValueError(f"rename {item!r}: expected VIEW=NEW_NAME")
            out[src] = dst
        return out

    def __post_init__(self):
        names = self.view_names()
        unknown = [v for v in names if v not in VIEWS]
        if unknown:
            raise ValueError(f"rename {list(self.rename)}: {unknown} are not views extraction "
                             f"writes ({', '.join(VIEWS)})")
        written = [names.get(v, v) for v in VIEWS]
        if len(set(written)) != len(written):
            raise ValueError(f"rename {list(self.rename)}: two views would be written under one "
                             "name; give each view a name of its own")
        for key in ("prompt", "zeroshot_prompt"):
            why = template_problem(getattr(self, key))
            if why:
                raise ValueError(f"{key}: {why}")
        if self.batch_size < 1 or self.per_bin < 1 or self.bins < 1 or self.workers < 0:
            raise ValueError("batch_size, per_bin and bins must be >= 1; workers >= 0")
