"""Every training method as one record: what it reads, what it scores with, how it is built.

Input: a method name (``TrainConfig.method``). Output: its ``Method`` record: whether it reads
the conditioning views (Encoder II), its text input (the vocabulary's embeddings, or prompt
token ids for the frozen text tower), whether it runs that tower, whether it scores any
vocabulary (a linear probe scores only its training classes), which vocabulary template of
``ModelConfig`` it reads, whether it has weights to train, and its builder
(``(cfg, dims, classes, tower, init_context) -> nn.Module``). Config validation, the CLI, the
grid's recipes, evaluation, predict and bench/ ask this table; adding a method is its model code
plus one entry here (docs/architecture.md). The builders import the model code when called, so
reading the table costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal


@dataclass(frozen=True)
class Method:
    name: str
    conditioning: bool                 # reads model.conditioning_views (Encoder II)
    text: Literal["embeddings", "prompt_ids"]  # prompt ids: it runs the frozen text tower
    open_vocabulary: bool              # scores another dataset's vocabulary
    vocab: Literal["text_vocab", "zeroshot_vocab"]  # the ModelConfig field naming its vocabulary
    trains: bool                       # has weights to fit (zero-shot has none)
    build: Callable
    text_per_video: bool = False       # its class embeddings depend on the video (B x C texts)
    recompute_text: bool = False       # model.prompt.recompute_text=auto recomputes its text passes
    config_groups: tuple = ()          # the ModelConfig groups it reads (recorded with a run)
    display: str = ""                  # its name in a paper's table (LaTeX)

    @property
    def tower(self) -> bool:
        """It runs the vocabulary's frozen text tower (derived from its text input, once)."""
        return self.text == "prompt_ids"

    @property
    def stackable(self) -> bool:
        """Its seeds can train as one stacked model: it has weights to fit and no text tower
        (``xmic.train.stacked``)."""
        return self.trains and not self.tower


def _xmic(cfg, dims, classes, tower, init_context):
    from xmic.train.model import XMICAdapter
    m, x = cfg.model, cfg.model.xmic
    return XMICAdapter(text_dim=dims["text"], cond_dim=dims["cond"],
                       views=len(m.conditioning_views), frames=cfg.frames, heads=x.heads,
                       spatial_layers=x.spatial_layers, temporal_layers=x.temporal_layers,
                       mlp_ratio=x.mlp_ratio, out_hidden_ratio=x.out_hidden_ratio,
                       out_depth=x.out_depth, temporal_pool=x.temporal_pool, alpha=x.alpha,
                       train_logit_scale=m.train_logit_scale, logit_scale_init=m.logit_scale_init)


def _zeroshot(cfg, dims, classes, tower, init_context):
    from xmic.train.model import ZeroShot
    return ZeroShot()


def _linear(cfg, dims, classes, tower, init_context):
    from xmic.train.model import LinearProbe
    return LinearProbe(dims["text"], classes)


def _clip_adapter(cfg, dims, classes, tower, init_context):
    from xmic.train.model import ClipAdapter
    m = cfg.model
    return ClipAdapter(dims["text"], m.clip_adapter.reduction, m.clip_adapter.ratio,
                       m.logit_scale_init)


def _prompt_common(cfg, tower, init_context) -> dict:
    from xmic.config import ConfigError
    from xmic.train.prompt_model import phrase_embedding
    m, p = cfg.model, cfg.model.prompt
    if tower is None:
        raise ConfigError(f"method {cfg.method} needs the vocabulary's text tower")
    init = phrase_embedding(tower, p.init) if init_context else None
    if init is not None and len(init) > p.context:
        raise ConfigError(f"model.prompt.init {p.init!r} is {len(init)} tokens, more "
                          f"than model.prompt.context={p.context}")
    recompute = p.recompute_text == "always" or (p.recompute_text == "auto" and
                                                 METHODS[cfg.method].recompute_text)
    return dict(context=p.context, init=init, text_batch=p.text_batch,
                recompute=recompute, train_logit_scale=m.train_logit_scale,
                logit_scale_init=m.logit_scale_init)


def _coop(cfg, dims, classes, tower, init_context):
    from xmic.train.prompt_model import CoOp
    return CoOp(tower, tower.width, **_prompt_common(cfg, tower, init_context))


def _cocoop(cfg, dims, classes, tower, init_context):
    from xmic.train.prompt_model import CoCoOp
    return CoCoOp(tower, dims["text"], tower.width, meta_ratio=cfg.model.cocoop.meta_net_ratio,
                  **_prompt_common(cfg, tower, init_context))


_EMB = dict(text="embeddings")
_PROMPT = dict(text="prompt_ids", open_vocabulary=True, vocab="text_vocab",
               trains=True, conditioning=False)

# In the order tables and built-in recipes list them: zero-shot first.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("zeroshot", conditioning=False, open_vocabulary=True, vocab="zeroshot_vocab",
           trains=False, build=_zeroshot, display="Zero-shot CLIP", **_EMB),
    Method("linear", conditioning=False, open_vocabulary=False, vocab="text_vocab",
           trains=True, build=_linear, display="Linear probe", **_EMB),
    Method("clip-adapter", conditioning=False, open_vocabulary=True, vocab="text_vocab",
           trains=True, build=_clip_adapter, config_groups=("clip_adapter",),
           display="CLIP-Adapter", **_EMB),
    Method("xmic", conditioning=True, open_vocabulary=True, vocab="text_vocab", trains=True,
           build=_xmic, config_groups=("xmic",), display="X-MIC", **_EMB),
    Method("coop", build=_coop, config_groups=("prompt", "text_tower"), display="CoOp",
           **_PROMPT),
    Method("cocoop", build=_cocoop, text_per_video=True, recompute_text=True,
           config_groups=("prompt", "cocoop", "text_tower"), display="CoCoOp", **_PROMPT),
)}


def method(name: str) -> Method:
    """The record of ``name``; an unknown name is a ``ConfigError`` listing the known ones."""
    if name not in METHODS:
        from xmic.config import ConfigError
        raise ConfigError(f"unknown method {name!r}; use one of {', '.join(METHODS)}")
    return METHODS[name]


def tower_methods() -> tuple[str, ...]:
    return tuple(n for n, m in METHODS.items() if m.tower)
