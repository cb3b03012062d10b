"""Issue 41: `evc export` writes a model as ONNX files, and the ONNX Runtime codec (evc.onnx.runtime)
decodes every exact int8 file (format version 3 and later) to the PyTorch codec's latent, integer for
integer, and writes files the PyTorch codec decodes, in a process that never imports torch.

Runs where the `onnx` extra is installed (the `test` extra brings it); skipped otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'evc[onnx]')")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'evc[onnx]')")

import evc  # noqa: E402
from evc.bitstream.container import parse  # noqa: E402
from evc.cli.main import main  # noqa: E402
from evc.entropy.dual_prior import step_one_mask  # noqa: E402
from evc.entropy.gaussian import scale_index, scale_table  # noqa: E402
from evc.entropy.latent_codec import CodedLatent, decoding_options  # noqa: E402
from evc.errors import EVCError, FormatError, ModelError  # noqa: E402
from evc.nn.tile_grid import TilePolicy  # noqa: E402
from evc.image import network_input, padded, padding_mode, rgb_to_tensor  # noqa: E402
from evc.onnx.export import export  # noqa: E402
from evc.onnx.integer_graph import hyper_graph, step_two_graph  # noqa: E402
from evc.onnx.runtime import OnnxCodec  # noqa: E402
from evc.onnx.runtime import scale_index as onnx_scale_index  # noqa: E402
from conftest import rgb_array, smooth_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ROOT / "tests" / "data" / "formats"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, weights) -> Path:
    """The seeded EVC-SS (the committed format files' model) exported."""
    folder = tmp_path_factory.mktemp("onnx") / "evc-ss"
    export(folder, weights=weights)
    return folder


@pytest.fixture(scope="module")
def torch_codec(weights) -> evc.Codec:
    return evc.load("EVC-SS", device="cpu", weights=weights)


@pytest.fixture(scope="module")
def ort_codec(exported) -> OnnxCodec:
    return OnnxCodec(exported, threads=1)


def torch_latent(codec: evc.Codec, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(y_hat, Q_step) of a file as the PyTorch codec decodes them."""
    header, streams = parse(data)
    options = decoding_options(len(streams), header.exact, header.skip_certain, header.exact_arithmetic)
    z_shape = (1, 192, padded(header.height) // 64, padded(header.width) // 64)
    y_hat, q_step = codec.model.latent_codec.decompress(CodedLatent(streams, header.symbols_crc), z_shape, options,
                                                        torch.device("cpu"))
    return y_hat.numpy(), q_step.numpy()


def pixel_agreement(a: Image.Image, b: Image.Image) -> tuple[int, float]:
    """Largest absolute difference (levels) and share of identical values of two decoded images."""
    x, y = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    assert x.shape == y.shape and a.mode == b.mode
    return int(np.abs(x - y).max()), float(np.mean(x == y))


def assert_decodes_alike(torch_codec: evc.Codec, ort_codec: OnnxCodec, data: bytes, label: str) -> None:
    """The file decodes to the same latent on both runtimes, integer for integer, and to pixels within
    float rounding (the largest difference and the share of identical values are printed: -s)."""
    y_torch, q_torch = torch_latent(torch_codec, data)
    y_ort, q_ort = ort_codec.decode_latent(data)
    assert np.array_equal(y_torch, y_ort) and np.array_equal(q_torch, q_ort)
    largest, same = pixel_agreement(torch_codec.decompress(data), ort_codec.decompress(data))
    print(f"{label}: largest pixel difference {largest}, {100 * same:.2f} % identical")
    assert largest <= 2


@pytest.mark.parametrize("source", ["shipped", "seeded"])
def test_the_integer_graphs_compute_the_pytorch_int8_integers(source):
    """hyper.onnx and step_two.onnx against ExactEntropyParameters, on inputs that saturate too."""
    import onnxruntime

    if source == "shipped":
        codec = evc.load("EVC-SS", device="cpu")
    else:
        codec = evc.Codec(evc.create_model("EVC-SS", seed=5), "EVC-SS", device="cpu")
    networks = codec.model.entropy_networks
    exact = codec.model.latent_codec.exact_parameters("int8")
    run = {name: onnxruntime.InferenceSession(graph(networks).SerializeToString(), providers=["CPUExecutionProvider"])
           for name, graph in (("hyper", hyper_graph), ("step_two", step_two_graph))}
    generator = torch.Generator().manual_seed(1)
    for height, width in ((1, 1), (2, 3)):
        z = torch.randint(-8, 9, (1, 192, height, width), generator=generator).double()
        z[0, :4, 0, 0] = torch.tensor([5000.0, -5000.0, 300.0, -300.0])  # beyond every saturation
        expected = exact.hyper(z)
        got = run["hyper"].run(["q_step", "sigma", "mu"], {"z_hat": z.numpy()})
        for e, g in zip(expected, got):
            assert np.array_equal(e.numpy(), g)
        q_step, sigma, mu = expected
        mask = step_one_mask(192, 4 * height, 4 * width, "cpu")
        symbols = torch.randint(-30, 31, mu.shape, generator=generator).double()
        symbols[0, 0, 0, 0] = 9000.0
        y_hat1 = torch.where(mask, symbols + mu, torch.zeros_like(mu))
        expected = exact.step_two(y_hat1, mu, sigma, q_step)
        got = run["step_two"].run(["mu2", "sigma2"], {"y_hat_step1": y_hat1.numpy(), "mu": mu.numpy(),
                                                      "sigma": sigma.numpy(), "q_step": q_step.numpy()})
        for e, g in zip(expected, got):
            assert np.array_equal(e.numpy(), g)


@pytest.mark.parametrize("case", ["rgb", "gray", "substreams", "padded"])
def test_a_pytorch_file_decodes_to_the_same_latent_on_onnx_runtime(torch_codec, ort_codec, weights, case):
    image = {"rgb": rgb_array(64, 128, seed=1), "gray": Image.fromarray(smooth_image(64, 64, seed=2)[:, :, 0]),
             "substreams": rgb_array(64, 64, seed=3), "padded": rgb_array(37, 70, seed=4)}[case]
    codec = torch_codec
    if case == "substreams":
        codec = evc.load("EVC-SS", device="cpu", weights=weights, substreams=3)
    assert_decodes_alike(torch_codec, ort_codec, codec.compress(image, 0.6), case)


def test_an_onnx_runtime_file_decodes_with_pytorch_to_the_same_latent(torch_codec, ort_codec):
    image = rgb_array(64, 128, seed=6)
    for quality in (0.0, 1.0):
        data = ort_codec.compress(image, quality)
        assert parse(data)[0].q_index == torch_codec.q_index(quality)  # the same quality -> q index owner
        y_torch, q_torch = torch_latent(torch_codec, data)
        y_ort, q_ort = ort_codec.decode_latent(data)
        assert np.array_equal(y_torch, y_ort) and np.array_equal(q_torch, q_ort)
        result = ort_codec.encode(image, quality)
        assert result.data == data
        largest, same = pixel_agreement(torch_codec.decompress(data), result.reconstruction)
        print(f"quality {quality}: largest pixel difference {largest}, {100 * same:.2f} % identical")
        assert largest <= 2
    # An encoder's latent is float: its file may differ from the PyTorch encoder's, by little.
    assert abs(len(ort_codec.compress(image, 0.5)) - len(torch_codec.compress(image, 0.5))) < 0.05 * len(data)


def test_tiles_leave_the_latent_exact(torch_codec, exported):
    """Every graph run in 64-pixel tiles (large images' memory bound): the integer networks give the
    same latent, the transforms pixels within float rounding, and the files decode with PyTorch."""
    tiled = OnnxCodec(exported, threads=1)
    tiled.tile_policy = TilePolicy(untiled_max_pixels=0, tile_pixels=64)
    image = rgb_array(128, 192, seed=10)
    assert_decodes_alike(torch_codec, tiled, torch_codec.compress(image, 0.5), "tiled")
    written = tiled.compress(image, 0.5)
    assert np.array_equal(torch_latent(torch_codec, written)[0], tiled.decode_latent(written)[0])


def test_icc_profile_and_alpha_go_both_ways(torch_codec, ort_codec):
    from helpers_icc import display_p3_profile

    profile = display_p3_profile()
    rgba = np.dstack([rgb_array(40, 72, seed=11), np.linspace(0, 255, 72, dtype=np.uint8)[None].repeat(40, 0)])
    image = Image.fromarray(rgba, "RGBA")
    image.info["icc_profile"] = profile
    for data in (torch_codec.compress(image, 0.5), ort_codec.compress(image, 0.5)):
        for decoded in (ort_codec.decompress(data), torch_codec.decompress(data)):
            assert decoded.mode == "RGBA" and decoded.info["icc_profile"] == profile
            assert np.array_equal(np.asarray(decoded)[:, :, 3], rgba[:, :, 3])
        assert_decodes_alike(torch_codec, ort_codec, data, "ICC profile and alpha")


def test_a_scalable_model_chooses_its_level_as_pytorch_does(tmp_path):
    """Shipped Scale-SS: every encoder level is tried and the lowest RD cost kept (or the one asked for),
    and its files decode alike."""
    export(tmp_path / "scale", "Scale-SS")
    torch_codec, ort_codec = evc.load("Scale-SS", device="cpu"), OnnxCodec(tmp_path / "scale", threads=1)
    image = rgb_array(64, 128, seed=3)
    for level in (None, 1):
        result = ort_codec.encode(image, 0.5, encoder_level=level)
        assert result.encoder_level == torch_codec.encode(image, 0.5, encoder_level=level).encoder_level
        assert_decodes_alike(torch_codec, ort_codec, result.data, f"Scale-SS level {level}")


def test_committed_files_of_each_int8_version_decode_on_onnx_runtime(ort_codec):
    for name in ("v3-int8", "v4-int8-exif-xmp", "v4-int8-alpha"):
        image = ort_codec.decompress((FORMATS / f"{name}.evc").read_bytes())
        with Image.open(FORMATS / f"{name}.png") as committed:
            assert image.mode == committed.mode and image.size == committed.size
            assert np.abs(np.asarray(image, np.int64) - np.asarray(committed, np.int64)).max() <= 1
            if name.endswith("alpha"):
                assert np.array_equal(np.asarray(image)[:, :, 3], np.asarray(committed)[:, :, 3])
        if name.endswith("xmp"):
            assert image.info["exif"] and image.info["xmp"]
    for name in ("v1-float", "v2-float64"):  # not exact int8: the PyTorch codec decodes these
        with pytest.raises(FormatError, match="only the PyTorch codec decodes"):
            ort_codec.decompress((FORMATS / f"{name}.evc").read_bytes())


def test_float_files_and_other_weights_are_refused(ort_codec, weights):
    image = rgb_array(64, 64, seed=7)
    floated = evc.load("EVC-SS", device="cpu", weights=weights, exact=False)
    with pytest.raises(FormatError, match="float32 arithmetic"):
        ort_codec.decompress(floated.compress(image, 0.5))
    with pytest.raises(FormatError, match="other weights"):
        ort_codec.decompress(evc.load("EVC-SS", device="cpu").compress(image, 0.5))


def test_the_rate_settings_are_the_pytorch_codecs(torch_codec, ort_codec):
    for quality in (0.0, 0.3, 0.5, 1.0):
        assert ort_codec.q_index(quality) == torch_codec.q_index(quality)
    image = rgb_array(64, 64, seed=8)
    data = ort_codec.compress(image, target_bpp=1.0)
    assert len(data) * 8 / image[:, :, 0].size <= 1.0
    with pytest.warns(UserWarning, match="highest-rate anchor"):
        ort_codec.compress(image, q_index=1)


def test_network_input_and_scale_index_are_the_pytorch_codecs():
    for height, width in ((37, 70), (64, 128), (10, 200)):
        rgb = rgb_array(height, width, seed=height)
        x = rgb_to_tensor(rgb)
        x = F.pad(x, (0, padded(width) - width, 0, padded(height) - height), mode=padding_mode(width, height))
        assert np.array_equal(x.numpy(), network_input(rgb))
    sigma = torch.cat([torch.rand(5000, dtype=torch.float64) * 70, torch.tensor([0.0, 0.11, 64.0, 1e9])])
    ours = onnx_scale_index(sigma.numpy(), scale_table().numpy())
    assert np.array_equal(ours, scale_index(sigma).numpy())


def test_both_codecs_time_the_same_parts(torch_codec, exported):
    """benchmarks/onnx_runtime.py times each runtime through its public hook (Execution.timing,
    OnnxCodec.timing): both name the same parts, each around work that runs on encode and decode."""
    image = rgb_array(64, 64, seed=12)
    seen: dict[str, list[str]] = {"pytorch": [], "onnxruntime": []}

    def hook(runtime: str):
        @contextmanager
        def timed(part: str):
            seen[runtime].append(part)
            yield

        return timed

    ort = OnnxCodec(exported, threads=1)
    ort.timing = hook("onnxruntime")
    ort.decompress(ort.compress(image, 0.5))
    previous = torch_codec.execution
    torch_codec.execution = dataclasses.replace(previous, timing=hook("pytorch"))
    try:
        torch_codec.decompress(torch_codec.compress(image, 0.5))
    finally:
        torch_codec.execution = previous
    parts = {"transforms", "entropy networks", "coding"}
    assert set(seen["pytorch"]) == set(seen["onnxruntime"]) == parts


DRIVER = textwrap.dedent('''
    import json, sys
    from evc.cli.main import main
    from evc.onnx.runtime import OnnxCodec
    folder, evc_file, out_png, out_evc, image = sys.argv[1:6]
    codes = [main(["decode", "--onnx", folder, evc_file, out_png]),
             main(["encode", "--onnx", folder, image, out_evc, "--quality", "0.4"])]
    OnnxCodec(folder).decompress(open(out_evc, "rb").read())
    print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
''')


def test_a_process_decoding_with_onnx_runtime_never_imports_torch(tmp_path, exported, torch_codec):
    source = tmp_path / "in.png"
    Image.fromarray(rgb_array(48, 80, seed=9)).save(source)
    evc_file = tmp_path / "in.evc"
    evc_file.write_bytes(torch_codec.compress(source, 0.5))
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "EVC_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", DRIVER, str(exported), str(evc_file), str(tmp_path / "out.png"),
                           str(tmp_path / "out.evc"), str(source)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"codes": [0, 0], "torch": False}
    assert torch_codec.decompress((tmp_path / "out.evc").read_bytes()).size == (80, 48)


def test_export_and_the_onnx_options_on_the_command_line(capsys, tmp_path, exported, weights):
    assert main(["export", str(exported)]) == 2  # not empty
    assert "pass --force" in capsys.readouterr().err
    assert main(["decode", "--onnx", str(tmp_path / "none"), str(FORMATS / "v3-int8.evc"), str(tmp_path / "a.png")]) == 2
    assert "evc export" in capsys.readouterr().err
    assert main(["decode", "--onnx", str(exported), "--weights", str(weights), str(FORMATS / "v3-int8.evc"),
                 str(tmp_path / "a.png")]) == 2
    assert "--weights does not go with --onnx" in capsys.readouterr().err
    assert main(["encode", "--onnx", str(exported), "--model", "EVC-LL", str(FORMATS / "v3-int8.png"),
                 str(tmp_path / "a.evc")]) == 2
    assert "is of EVC-SS, not EVC-LL" in capsys.readouterr().err
    manifest = exported / "manifest.json"
    original = manifest.read_text()
    manifest.write_text(json.dumps({**json.loads(original), "format_version": 99}))
    try:
        with pytest.raises(ModelError, match="run `evc export"):
            OnnxCodec(exported)
    finally:
        manifest.write_text(original)


def test_a_missing_onnxruntime_is_named(monkeypatch, exported):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime then raises ImportError
    with pytest.raises(EVCError, match=r"pip install 'evc\[onnx\]'"):
        OnnxCodec(exported)
