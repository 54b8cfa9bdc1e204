"""OpenAI TorchScript archives: tensors read without running the archive's code, and the state
dict checked against the model it is converted for."""
from __future__ import annotations

import zipfile
from typing import Tuple

import pytest
import torch

from helpers import run_xmic
from extract_data import TINY
from xmic.towers.encoders import EncoderError, load_clip
from xmic.towers.weight_files import convert_openai_weights
from xmic.towers.script_archive import read_archive_tensors


class _Payload(torch.nn.Module):
    """A module whose TorchScript ``__setstate__`` creates a file named in its own state."""

    def __init__(self, target: str):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.target = target

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool, str]:
        return (self.w, self.training, self.target)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool, str]) -> None:
        x = torch.from_file(state[2], True, 16, dtype=torch.uint8)  # creates the file
        self.w = state[0] + x[:3].float() * 0.0
        self.training = state[1]
        self.target = state[2]

    def forward(self, x):
        return x * self.w


def test_an_archive_whose_code_writes_a_file_runs_nothing(tmp_path):
    target = tmp_path / "written-by-the-archive"
    torch.jit.script(_Payload(str(target))).save(str(tmp_path / "evil.pt"))
    torch.jit.load(str(tmp_path / "evil.pt"))  # the payload is live: torch.jit.load runs it
    assert target.exists()
    target.unlink()
    with pytest.raises(EncoderError, match="not the state dict of"):
        convert_openai_weights(tmp_path / "evil.pt", tmp_path / "w.safetensors", str(TINY))
    assert not target.exists() and not (tmp_path / "w.safetensors").exists()
    cp = run_xmic("extract", "convert-weights", tmp_path / "evil.pt", tmp_path / "w.safetensors",
                  "--model", str(TINY), check=False)
    assert cp.returncode == 2 and "missing" in cp.stderr and not target.exists()


def test_archive_tensors_equal_the_script_modules_state_dict(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    net.register_buffer("scale", torch.arange(6.0).view(2, 3)[:, 1:])  # a strided view
    ts = torch.jit.trace(net, torch.randn(2, 3))
    ts.save(str(tmp_path / "m.pt"))
    got = read_archive_tensors(tmp_path / "m.pt")
    want = ts.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_archives_that_are_not_clip_or_not_archives_are_refused(tmp_path):
    encoder_tiny = load_clip(str(TINY), "random")
    one = torch.jit.trace(torch.nn.Linear(2, 2), torch.randn(1, 2))
    one.save(str(tmp_path / "one.pt"))
    with pytest.raises(EncoderError, match=r"2 tensors that are not the state dict"):
        convert_openai_weights(tmp_path / "one.pt", tmp_path / "o.safetensors", str(TINY))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(EncoderError, match="not a zip"):
        convert_openai_weights(tmp_path / "junk.pt", tmp_path / "o.safetensors", str(TINY))
    # a pickle in the archive naming a global outside the allow-list
    with zipfile.ZipFile(tmp_path / "glob.pt", "w") as z:
        z.writestr("a/data.pkl", b"\x80\x02cos\nsystem\nq\x00.")
    with pytest.raises(EncoderError, match="os.system' is not allowed"):
        convert_openai_weights(tmp_path / "glob.pt", tmp_path / "o.safetensors", str(TINY))
    # the real thing: a traced tiny CLIP converts and loads, equal to the model it came from
    ts = torch.jit.trace_module(encoder_tiny.model, {"encode_image": (torch.randn(1, 3, 32, 32),)})
    ts.save(str(tmp_path / "tiny.pt"))
    s = convert_openai_weights(tmp_path / "tiny.pt", tmp_path / "t.safetensors", str(TINY))
    assert s["tensors"] == len(encoder_tiny.model.state_dict())
    with pytest.raises(EncoderError, match="not the state dict of ViT-B-16-quickgelu"):
        convert_openai_weights(tmp_path / "tiny.pt", tmp_path / "t2.safetensors")
    assert load_clip(str(TINY), str(tmp_path / "t.safetensors")).identity["weights_origin"] == "openai"


def test_weights_files_that_cannot_be_read_are_one_line(tmp_path):
    enc = load_clip(str(TINY), "random")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    (tmp_path / "huge.safetensors").write_bytes((1 << 60).to_bytes(8, "little") + b"{}")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, why in (("empty.safetensors", "empty"), ("garbage.safetensors", "not a readable"),
                      ("huge.safetensors", "header length"), ("empty.pt", "empty")):
        with pytest.raises(EncoderError, match=why):
            load_clip(str(TINY), str(tmp_path / name))
    # a TorchScript archive is never loaded as weights, directly or in a local-dir folder
    ts = torch.jit.trace_module(enc.model, {"encode_image": (torch.randn(1, 3, 32, 32),)})
    ts.save(str(tmp_path / "script.pt"))
    with pytest.raises(EncoderError, match="TorchScript archive.*convert-weights"):
        load_clip(str(TINY), str(tmp_path / "script.pt"))
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text('{"model_cfg": {}}')
    ts.save(str(folder / "open_clip_model.pt"))  # a name open_clip never loads from a folder
    with pytest.raises(EncoderError, match=r"no weights file \(.safetensors/.bin/.pth\)"):
        load_clip(str(TINY), f"local-dir:{folder}")
    ts.save(str(folder / "open_clip_pytorch_model.bin"))  # one it loads: refused as an archive
    with pytest.raises(EncoderError, match="TorchScript archive"):
        load_clip(str(TINY), f"local-dir:{folder}")


def test_an_archive_costs_what_its_model_needs(tmp_path):
    """A storage member that inflates far past its tensor is read only as far as the tensor
    needs; a stride-0 view of a few bytes is refused before anything is copied; a module tree
    sharing its children through the memo is walked a bounded number of times."""
    import pickle
    import resource
    from xmic.towers import script_archive as sa
    enc = load_clip(str(TINY), "random")
    ts = torch.jit.trace_module(enc.model, {"encode_image": (torch.randn(1, 3, 32, 32),)})
    ts.save(str(tmp_path / "real.pt"))
    bomb = tmp_path / "bomb.pt"  # the same archive, one storage member followed by 256 MiB
    with zipfile.ZipFile(tmp_path / "real.pt") as src, zipfile.ZipFile(bomb, "w") as dst:
        victim = next(n for n in src.namelist() if "/data/" in n)
        for info in src.infolist():
            data = src.read(info)
            if info.filename != victim:
                dst.writestr(info, data)
                continue
            deflated = zipfile.ZipInfo(victim)
            deflated.compress_type = zipfile.ZIP_DEFLATED
            with dst.open(deflated, "w", force_zip64=True) as f:
                f.write(data)
                for _ in range(256):
                    f.write(bytes(1 << 20))
    assert bomb.stat().st_size < (tmp_path / "real.pt").stat().st_size + (2 << 20)  # inflates to +256 MiB
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = read_archive_tensors(bomb)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024
    assert grown_mb < 64 and got.keys() == read_archive_tensors(tmp_path / "real.pt").keys()
    with pytest.raises(sa.ArchiveError, match="more than 1000 bytes"):
        read_archive_tensors(tmp_path / "real.pt", max_bytes=1000)
    storage = torch.zeros(4)
    for size, stride in (((250_000_000,), (0,)), ((4, 4), (1, 1)), ((5,), (1,)), ((2,), (-1,))):
        with pytest.raises(pickle.UnpicklingError, match="does not fit|malformed"):
            sa._rebuild_tensor(storage, 0, size, stride)
    assert sa._rebuild_tensor(storage, 0, (2, 2), (1, 2)).shape == (2, 2)  # a transposed view
    node = sa._script_class("__torch__.Leaf")()
    node.__setstate__({"w": torch.zeros(1)})
    for _ in range(40):  # 2^40 paths through 40 shared nodes
        parent = sa._script_class("__torch__.Node")()
        parent.__setstate__({"a": node, "b": node})
        node = parent
    with pytest.raises(sa.ArchiveError, match="more than 200000 nodes"):
        sa._walk(node, {})
