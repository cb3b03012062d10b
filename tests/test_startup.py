"""Issue 39: `evc info` and `evc models` answer without torch (it takes longer to import than they take
to run), and `import evc` does not import it; the codec's names load on first use.

What they read instead is checked against what torch computes: the stored model table against
evc.eval.complexity's counts, the numpy fingerprint of weights against evc.models.weights', the
metadata read from the header against safetensors' reader.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import evc
from evc.errors import ModelError
from evc.fileinfo import weights_identity
from evc.models import metadata
from evc.models.weights import load_state, save_weights, state_fingerprint

ROOT = Path(__file__).resolve().parents[1]
# Modules that `evc info` and `evc models` must not import: torch, and every extra (pip install -e .
# installs none of them).
HEAVY = ("torch", "scipy", "matplotlib", "imagecodecs", "pillow_heif", "tensorboard", "pytorch_msssim")

# Runs the commands in a fresh interpreter and reports what each imported, then imports the codec's
# names, which must bring torch in (so the check itself can see torch when it is there).
DRIVER = textwrap.dedent('''
    import contextlib, io, json, sys
    heavy = json.loads(sys.argv[1])
    loaded = lambda: sorted(m for m in heavy if m in sys.modules)
    import evc
    report = {"import evc": loaded()}
    from evc.cli.main import main
    for argv in json.loads(sys.argv[2]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(argv)
        report[" ".join(argv)] = {"code": code, "out": out.getvalue(), "loaded": loaded()}
    report["evc.Codec"] = (evc.Codec.__module__, loaded())
    print(json.dumps(report))
''')


@pytest.fixture(scope="module")
def shipped_file(tmp_path_factory) -> Path:
    """A small file coded by the shipped default model (so `evc info` checks the shipped weights'
    fingerprint and names the quality)."""
    path = tmp_path_factory.mktemp("startup") / "shipped.evc"
    rng = np.random.default_rng(0)
    path.write_bytes(evc.load(device="cpu").compress(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 0.5))
    return path


def test_info_and_models_import_neither_torch_nor_the_extras(shipped_file):
    commands = [["info", str(shipped_file)], ["models"]]
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(HEAVY), json.dumps(commands)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["import evc"] == []
    info, models = report[f"info {shipped_file}"], report["models"]
    assert info["code"] == 0 and info["loaded"] == [], info
    # The fingerprint was computed (without torch) and matched: the quality is named, not "unknown".
    assert re.search(r"^quality +[\d.]+(-[\d.]+)? \(", info["out"], re.M), info["out"]
    assert models["code"] == 0 and models["loaded"] == [], models
    assert "Shipped weights (model cards):" in models["out"] and "EVC-SS" in models["out"]
    # The codec's names still load on first use, and that does import torch: the check sees it.
    assert report["evc.Codec"] == ["evc.codec", ["torch"]]


def test_the_lazy_names_are_the_codec_modules():
    import evc.codec

    assert evc.load is evc.codec.load and evc.Codec is evc.codec.Codec
    assert evc.decompress is evc.codec.decompress and evc.EncodeResult is evc.codec.EncodeResult
    assert evc.file_info is evc.codec.file_info and evc.FileInfo is evc.codec.FileInfo
    assert set(evc.__all__) <= set(dir(evc))
    assert evc.image.open_image is not None  # submodules as attributes, as before
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        evc.no_such_name  # noqa: B018


def test_the_stored_model_table_is_the_counted_one():
    from evc.eval.complexity import format_model_table as counted
    from evc.models.summary import FIGURES, format_model_table

    assert sorted(FIGURES) == sorted(evc.MODELS)  # every model stored: `evc models` counts none
    assert format_model_table(evc.MODELS) == counted(evc.MODELS)
    with pytest.raises(KeyError, match="no stored figures for EVC-XX"):
        format_model_table({**evc.MODELS, "EVC-XX": evc.MODELS["EVC-SS"]})


def test_the_numpy_fingerprint_is_the_torch_one(tmp_path):
    shipped = evc.MODELS["EVC-SS"].weights_dir
    saved = tmp_path / "saved"
    save_weights(evc.create_model("EVC-SS", seed=3), saved, "EVC-SS")
    for source in (shipped, saved):
        state, meta = load_state(source)
        expected = (state_fingerprint(state), [float(v) for v in state["rate.q_scale"]])
        assert metadata.numpy_identity(str(source)) == expected
        assert weights_identity(source) == expected
    # bfloat16 and a 0-d tensor, which numpy cannot hold / might reshape: the same answer (via torch)
    odd = tmp_path / "odd.safetensors"
    save_file({"a": torch.tensor([1.5, -2.25], dtype=torch.bfloat16), "b": torch.tensor(3.0),
               "rate.q_scale": torch.tensor([0.4, 0.3, 0.2, 0.1])}, str(odd), metadata={"evc.model": "EVC-SS"})
    state, _ = load_state(odd)
    with pytest.raises(metadata.NeedsTorch):
        metadata.numpy_identity(odd)
    assert weights_identity(odd) == (state_fingerprint(state), [float(v) for v in state["rate.q_scale"]])
    # The numpy path itself on a 0-d tensor (no bfloat16): shape () hashed as ()
    plain = tmp_path / "plain.safetensors"
    save_file({"b": torch.tensor(3.0), "c": torch.ones(2, 3, dtype=torch.float16)}, str(plain))
    assert metadata.numpy_identity(str(plain)) == (state_fingerprint(load_state(plain)[0]), None)


def test_metadata_is_read_from_the_header_as_safetensors_reads_it(tmp_path):
    for folder in (evc.MODELS["EVC-SS"].weights_dir, evc.MODELS["Scale-SS"].weights_dir):
        first = sorted(folder.glob("*.safetensors"))[0]
        with safe_open(str(first), framework="pt") as f:
            assert metadata.read_metadata(folder) == f.metadata()
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))  # no metadata at all
    assert metadata.read_metadata(bare) == {}
    for name, content in (("short", b"\x01\x02"), ("huge", (10**9).to_bytes(8, "little") + b"{}"),
                          ("text", (4).to_bytes(8, "little") + b"[1]x"), ("list", (3).to_bytes(8, "little") + b"[1]")):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        with pytest.raises(ModelError, match=f"{name}.safetensors is not a readable safetensors file"):
            metadata.read_metadata(path)


def test_the_stream_layout_names_the_arithmetics_the_codec_has():
    from evc.entropy.exact_parameters import ARITHMETICS
    from evc.entropy.streams import ARITHMETIC_NAMES

    assert tuple(ARITHMETICS) == ARITHMETIC_NAMES
