"""Frozen open_clip image and text towers, loaded offline, and OpenAI weight conversion.

Inputs: ``model`` (an open_clip model name, or the path of an open_clip model-config JSON) and
``weights`` (a state-dict file .pt/.bin/.safetensors, ``local-dir:DIR`` in open_clip's layout, a
pretrained tag or ``hf-hub:ORG/REPO`` resolved through open_clip's cache (``named_weights``), or
``random`` for tests and demos: seeded, and marked in the fingerprint). Outputs: ``FrozenEncoder``
with ``encode_images`` (preprocessed [B, 3, H, W] -> projected, unnormalised [B, D]) and
``encode_texts`` (strings -> [C, D]), its PIL transform, and the fingerprint parts (model
identity, preprocessing). Only named weights are ever downloaded (by open_clip, into the Hugging
Face cache, honouring ``HF_HUB_OFFLINE``). OpenAI-derived weights on an architecture
without QuickGELU are refused: they load without error and silently lose accuracy.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xmic.cache.fingerprint import clip_preprocess, model_identity
from xmic.towers import named_weights
from xmic.towers.named_weights import EncoderError
from xmic.towers.preprocess import Preprocess
from xmic.files.atomic import sha256_file
from xmic.config import resolve_device

OPENAI_ORIGIN_KEY = "xmic.origin"
CONFIGS = Path(__file__).resolve().parent / "configs"  # model configs shipped with xmic
TINY_CONFIG = CONFIGS / "xmic-tiny-quickgelu.json"     # tests and the demo: seeded random weights


def resolve_model(model: str) -> tuple[str, dict]:
    """(open_clip model name, its config) for a registered name or a model-config JSON path."""
    import open_clip
    p = Path(model)
    if p.suffix == ".json":
        if not p.exists():
            raise EncoderError(f"{p}: model config not found")
        try:
            wanted = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise EncoderError(f"{p}: not a readable model-config JSON ({e})") from None
        model = p.stem  # open_clip registers configs by file name, for the whole process
        have = open_clip.get_model_config(model)
        if have is None:
            open_clip.add_model_config(p)
        elif have != wanted:
            raise EncoderError(f"{p}: open_clip already knows a model {model!r} with another "
                               "config (configs are named by file name); rename the file")
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise EncoderError(f"unknown open_clip model {model!r}; give a name from "
                           "open_clip.list_models() or the path of a model-config JSON")
    return model, cfg


def check_weights_file(path: Path) -> None:
    """A weights file xmic will load: not empty, a readable safetensors header, and never a
    TorchScript archive (whose code the loaders would run); one line naming the file."""
    import zipfile
    size = path.stat().st_size
    if size == 0:
        raise EncoderError(f"{path}: the weights file is empty")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        with open(path, "rb") as f:
            head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 1 or n > min(size - 8, 100 << 20):
            raise EncoderError(f"{path}: not a safetensors file (its header length {n} does not "
                               f"fit a file of {size} bytes)")
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as e:  # safetensors raises its own SafetensorError for a bad header
            raise EncoderError(f"{path}: not a readable safetensors file "
                               f"({type(e).__name__}: {str(e)[:200]})") from None
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist()):
                raise EncoderError(f"{path}: a TorchScript archive, which is never loaded as "
                                   "weights (it holds code); convert it once with `xmic extract "
                                   "convert-weights`")


def weights_origin(path: Path) -> str | None:
    """``openai`` when a weights file is known to hold OpenAI CLIP weights."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get(OPENAI_ORIGIN_KEY) == "openai":
                return "openai"
    return "openai" if "openai" in path.name.lower() else None


class _NoRandomInitNotice:
    """Drops open_clip's "No pretrained weights loaded ... initialized randomly" log line: xmic
    creates every model without weights and loads them itself, and says in its own words (once,
    ``FrozenEncoder.warnings``) when they are really random."""

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith("No pretrained weights loaded")


@contextlib.contextmanager
def quiet_model_creation():
    import logging
    root, notice = logging.getLogger(), _NoRandomInitNotice()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


def expected_state_shapes(model: str) -> dict[str, tuple]:
    """{name: shape} of the open_clip CLIP state dict ``model`` loads (built on the meta device:
    no memory, no weights)."""
    import open_clip
    name, _ = resolve_model(model)
    with quiet_model_creation(), torch.device("meta"):
        m = open_clip.create_model(name, pretrained=None, device="meta")
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


@dataclass
class FrozenEncoder:
    """A frozen image-and-text model (open_clip, or a timm image tower), its preprocessing and
    identity, ready to encode on its device."""
    model: torch.nn.Module
    tokenizer: object
    transform: object
    identity: dict
    preprocess: dict
    device: torch.device
    precision: str
    dim: int
    warnings: list[str] = field(default_factory=list)
    pixels: Preprocess | None = None  # the transform split: uint8 from workers, floats here

    def __post_init__(self):
        if self.pixels is None:
            self.pixels = Preprocess(self.transform)

    def _autocast(self):
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.float32,
                              enabled=dtype is not None)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] float32, projected, not normalised. ``images``: uint8 as
        ``pixels`` hands them over (normalised here, on the device), or already float."""
        x = self.pixels.normalise(images.to(self.device, non_blocking=True))
        with self._autocast():
            return self.model.encode_image(x).float()

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch: int = 256) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch):
            tokens = self.tokenizer(texts[i:i + batch]).to(self.device)
            with self._autocast():
                out.append(self.model.encode_text(tokens).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)


class _ImageTower(torch.nn.Module):
    """A timm backbone behind the ``encode_image`` interface (Encoder II; no text tower)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def encode_image(self, x):
        return self.net(x)


def load_timm(name: str, weights: str, device: str, precision: str, seed: int) -> FrozenEncoder:
    """A timm image model as Encoder II: pooled features [B, num_features], local weights only."""
    import timm
    from timm.data import create_transform, resolve_data_config
    try:
        with torch.random.fork_rng(devices=[]):  # seeded init, the caller's RNG untouched
            torch.manual_seed(seed)
            net = timm.create_model(name, pretrained=False, num_classes=0)
    except Exception as e:  # timm raises RuntimeError for unknown names
        raise EncoderError(f"timm:{name}: unknown timm model ({e})") from None
    warnings = []
    if weights == "random":
        digest = f"random-seed-{seed}"
        warnings.append(f"RANDOM WEIGHTS (seed {seed}) for timm:{name}: meaningless features")
    else:
        path = Path(weights)
        if not path.exists():
            raise EncoderError(f"{path}: weights file not found (nothing is downloaded)")
        check_weights_file(path)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            sd = sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd
        head = {k for k in sd if k.startswith(("head.", "fc.", "classifier."))}
        missing, unexpected = net.load_state_dict({k: v for k, v in sd.items() if k not in head},
                                                  strict=False)
        if missing or unexpected:
            raise EncoderError(f"{path}: does not fit timm:{name} (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
        digest = sha256_file(path)
    dev = torch.device(device)
    if precision in ("fp16", "bf16") and dev.type == "cpu":
        precision = "fp32"
    tower = _ImageTower(net).to(dev).eval()
    for p in tower.parameters():
        p.requires_grad_(False)
    data = resolve_data_config({}, model=net)
    size = data["input_size"][-1]
    prep = clip_preprocess(size, data.get("interpolation", "bicubic"), data["mean"], data["std"],
                           f"timm eval (crop_pct {data.get('crop_pct')})")
    identity = model_identity(f"timm:{name}", digest, "timm " + timm.__version__, torch.__version__,
                              False)
    return FrozenEncoder(tower, None, create_transform(**data), identity, prep, dev, precision,
                       int(net.num_features), warnings)


def check_weights(weights: str) -> str:
    """Extraction needs weights named: nothing is downloaded, and random ones must be asked for."""
    if not weights:
        raise EncoderError("give --weights FILE, local-dir:DIR, a pretrained tag such as openai, "
                           "hf-hub:ORG/REPO (or `random` for a test run)")
    return weights


def load_encoder(model: str, weights: str, device: str = "auto", precision: str = "fp32",
                 seed: int = 0) -> FrozenEncoder:
    """open_clip (name or config JSON) or ``timm:NAME`` (Encoder II, image only). Warnings (random
    weights, precision) are returned in ``FrozenEncoder.warnings`` for the caller to show."""
    check_weights(weights)
    device = str(resolve_device(device))
    if model.startswith("timm:"):
        return load_timm(model[len("timm:"):], weights, device, precision, seed)
    return load_clip(model, weights, device, precision, seed)


def _local_dir_model(folder: Path):
    """(model, name, {"quick_gelu"}, weights sha256, origin) of an open_clip local-dir folder."""
    import open_clip
    cfg_path = folder / "open_clip_config.json"
    if not cfg_path.exists():
        raise EncoderError(f"{folder}: no open_clip_config.json (expected open_clip's local-dir "
                           "layout: open_clip_config.json + open_clip_model.safetensors)")
    chosen = _local_dir_weights(folder)
    check_weights_file(chosen)
    try:
        model_cfg = json.loads(cfg_path.read_text()).get("model_cfg", {})  # read once
        name = model_cfg.get("name", folder.name)
        m = open_clip.create_model(f"local-dir:{folder}", device="cpu")
    except Exception as e:  # open_clip raises many kinds for a folder that does not fit
        raise EncoderError(f"{folder}: not a loadable open_clip local-dir ({type(e).__name__}:"
                           f" {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    cfg = {"quick_gelu": bool(model_cfg.get("quick_gelu", False))}
    return m, name, cfg, sha256_file(chosen), weights_origin(chosen)


def _local_dir_weights(folder: Path) -> Path:
    """The weights file open_clip loads from a local-dir folder (its own choice among the
    candidates), the one whose sha256 goes into the fingerprint; several candidates without
    open_clip's rule to choose are refused."""
    import open_clip.factory as factory
    found = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth"))
    if not found:
        raise EncoderError(f"{folder}: no weights file (.safetensors/.bin/.pth)")
    pick = getattr(factory, "_find_checkpoint_in_dir", None)
    if pick is not None:
        return Path(pick(folder))
    if len(found) > 1:
        raise EncoderError(f"{folder}: holds several weights files ({', '.join(found[:5])}); "
                           "keep the one open_clip should load")
    return folder / found[0]


def load_clip(model: str, weights: str, device: str = "cpu", precision: str = "fp32",
              seed: int = 0) -> FrozenEncoder:
    import open_clip
    warnings = []
    dev = torch.device(device)
    if precision in ("fp16", "bf16") and dev.type == "cpu":
        warnings.append(f"precision {precision} is for GPUs; encoding in fp32 on the CPU")
        precision = "fp32"
    if weights.startswith("local-dir:"):
        m, name, cfg, digest, origin = _local_dir_model(Path(weights[len("local-dir:"):]))
    else:
        name, cfg = resolve_model(model)
        with torch.random.fork_rng(devices=[]), quiet_model_creation():  # seeded init, the
            torch.manual_seed(seed)                                      # caller's RNG untouched
            m = open_clip.create_model(name, pretrained=None, device="cpu")
        if weights == "random":
            digest, origin = f"random-seed-{seed}", None
            warnings.append(f"RANDOM WEIGHTS (seed {seed}): embeddings are meaningless; give "
                            "--weights FILE or local-dir:DIR for real features")
        else:
            path = Path(weights)
            if named_weights.is_named(weights):  # a tag or hf-hub id: open_clip's cache
                if named_weights.pretrained_quick_gelu(name, weights) and not cfg.get("quick_gelu"):
                    raise EncoderError(
                        f"weights {weights!r} were trained with QuickGELU, but model {name!r} uses "
                        f"GELU: features would silently lose accuracy. Use --model {name}-quickgelu")
                path = named_weights.resolve(name, weights)
            if not path.exists():
                raise EncoderError(f"{path}: weights file not found (nothing is downloaded for a "
                                   "path: give a local .pt/.bin/.safetensors, local-dir:DIR, a "
                                   "pretrained tag, hf-hub:ORG/REPO, or `random`)")
            check_weights_file(path)
            origin = weights_origin(path)
            if origin == "openai" and not cfg.get("quick_gelu", False):
                raise EncoderError(
                    f"{path} holds OpenAI CLIP weights, trained with QuickGELU, but model {name!r} "
                    f"uses GELU: features would silently lose accuracy. Use --model {name}-quickgelu"
                    " (or set \"quick_gelu\": true in your model-config JSON)")
            try:
                open_clip.load_checkpoint(m, str(path), strict=True, weights_only=True)
            except Exception as e:
                raise EncoderError(f"{path}: does not fit model {name!r} ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:300]})") from None
            digest = sha256_file(path)
    m = m.to(dev).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    pc = m.visual.preprocess_cfg
    size = pc["size"] if isinstance(pc["size"], int) else pc["size"][0]
    transform = open_clip.image_transform(size, is_train=False, mean=pc["mean"], std=pc["std"],
                                          resize_mode=pc.get("resize_mode", "shortest"),
                                          interpolation=pc.get("interpolation", "bicubic"))
    identity = model_identity(name, digest, open_clip.__version__, torch.__version__,
                              bool(cfg.get("quick_gelu", False)))
    if origin:
        identity["weights_origin"] = origin
    prep = clip_preprocess(size, pc.get("interpolation", "bicubic"), pc["mean"], pc["std"],
                           "shortest-side+center-crop" if pc.get("resize_mode", "shortest") == "shortest"
                           else pc.get("resize_mode"))
    dim = int(m.text_projection.shape[1]) if getattr(m, "text_projection", None) is not None \
        else int(m.encode_image(torch.zeros(1, 3, size, size, device=dev)).shape[1])
    return FrozenEncoder(m, open_clip.get_tokenizer(name) if not weights.startswith("local-dir:")
                       else open_clip.get_tokenizer(weights), transform, identity, prep, dev,
                       precision, dim, warnings)
