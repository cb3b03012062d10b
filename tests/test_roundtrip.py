"""Coding round trips: the decoder reproduces the encoder's reconstruction exactly, for every model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import evc
from evc.entropy.latent_codec import CodingOptions
from evc.errors import FormatError
from evc.models.registry import MODELS
from evc.models.variable_rate import q_index_to_scale

from conftest import random_codec, run_in_threads, smooth_image


@pytest.mark.parametrize("name", list(MODELS))
def test_exact_round_trip_every_model(name: str) -> None:
    codec = random_codec(name)
    image = smooth_image(40, 56, seed=1)
    sizes = []
    for quality in (0.0, 0.5, 1.0):
        result = codec.encode(image, quality)
        decoded = codec.decompress(result.data)
        assert decoded.mode == "RGB" and decoded.size == (56, 40)
        assert np.array_equal(np.asarray(decoded), np.asarray(result.reconstruction))
        assert result.q_index == codec.q_index(quality)
        sizes.append(len(result.data))
    assert sizes[0] < sizes[1] < sizes[2], sizes  # the quality reaches the file: higher, more bits
    assert codec.encode(image, 0.5).data == codec.encode(image.copy(), 0.5).data  # deterministic


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 65), (17, 3), (63, 64), (64, 64), (65, 130), (128, 70)])
def test_odd_sizes(height: int, width: int) -> None:
    codec = random_codec("EVC-MS")
    image = smooth_image(height, width, seed=height * width)
    result = codec.encode(image, 0.3)
    decoded = np.asarray(codec.decompress(result.data))
    assert decoded.shape == (height, width, 3)
    assert np.array_equal(decoded, np.asarray(result.reconstruction))


def test_small_images_are_padded_by_replicating_their_edges() -> None:
    """Issue 38: an image with a side under 64 pixels is padded with its edge pixels repeated, not black
    borders: a 1x1 pixel codes to the streams of a 64x64 image of that pixel, and a 40x30 image to
    those of its edge-replicated 64x64 extension. Larger images are padded with zeros."""
    from evc.bitstream.container import parse

    codec = random_codec("EVC-SS")
    pixel = np.array([[[122, 115, 109]]], dtype=np.uint8)
    assert parse(codec.compress(pixel, 0.5))[1] == parse(codec.compress(np.tile(pixel, (64, 64, 1)), 0.5))[1]
    image = smooth_image(30, 40, seed=4)
    extended = np.pad(image, ((0, 34), (0, 24), (0, 0)), mode="edge")
    assert parse(codec.compress(image, 0.5))[1] == parse(codec.compress(extended, 0.5))[1]
    # Sides of 64 or more: zeros, which cost photos less rate (the validation split, evc.image.PADDING_MODE).
    photo = smooth_image(70, 100, seed=5)
    zeros = np.pad(photo, ((0, 58), (0, 28), (0, 0)))
    assert parse(codec.compress(photo, 0.5))[1] == parse(codec.compress(zeros, 0.5))[1]


@pytest.mark.filterwarnings("ignore:q index .* is past")  # q indices past the top anchor on purpose
def test_q_index_is_stored_and_used() -> None:
    codec = random_codec("EVC-SS")
    image = smooth_image(64, 64)
    for q_index in (1, 37, 175, 900):
        result = codec.encode(image, q_index=q_index)
        assert evc.file_info(result.data).q_index == q_index
        assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))
    with pytest.raises(ValueError):
        codec.encode(image, q_index=0)
    with pytest.raises(ValueError):
        codec.encode(image, quality=0.5, q_index=10)
    with pytest.raises(ValueError):
        codec.encode(image, quality=1.5)


@pytest.mark.filterwarnings("ignore:q index .* is past")  # q indices past the top anchor on purpose
def test_coarser_quantisation_gives_smaller_files() -> None:
    codec = random_codec("EVC-SS")
    image = smooth_image(64, 96, seed=5)
    sizes = [len(codec.compress(image, q_index=q)) for q in (20, 80, 320, 1280)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_file_of_another_model_or_weights_is_refused() -> None:
    image = smooth_image(32, 32)
    data = random_codec("EVC-SS").compress(image)
    with pytest.raises(FormatError, match="made by EVC-SS"):
        random_codec("EVC-MS").decompress(data)
    with pytest.raises(FormatError, match="other weights"):
        random_codec("EVC-SS", seed=1).decompress(data)


def test_training_forward_matches_the_coding_path() -> None:
    """In eval mode the training forward computes the same reconstruction as the codec: to 1e-4 with
    the float64 fixed point, whose entropy parameters are within about 2e-4 of float32; the 8-bit
    arithmetic rounds mu more coarsely (tests/test_exact_int8.py), so its reconstruction is close only."""
    codec = random_codec("EVC-SS")
    x = torch.from_numpy(smooth_image(64, 64, seed=3)).permute(2, 0, 1).unsqueeze(0).float() / 255
    q_index = codec.q_index(0.5)
    with torch.no_grad():
        out = codec.model.rd_forward(x, codec.model.analyse(x), torch.tensor(q_index_to_scale(q_index)))
        y = codec.model.analyse(x)
        float64 = CodingOptions(arithmetic="float64")
        _, x_hat = codec.model.compress_latent(y, q_index_to_scale(q_index), options=float64)
        _, x_hat_int8 = codec.model.compress_latent(y, q_index_to_scale(q_index))
    assert torch.allclose(out.x_hat, x_hat, atol=1e-4)
    assert torch.allclose(out.x_hat, x_hat_int8, atol=0.02) and not torch.equal(x_hat, x_hat_int8)
    assert out.bpp.shape == (1,) and out.bpp.item() > 0


def test_decoding_in_a_fresh_process_gives_the_same_pixels(tmp_path) -> None:
    from evc.models.weights import save_weights

    model = evc.create_model("EVC-SS", seed=7)
    save_weights(model, tmp_path / "w", "EVC-SS")
    codec = evc.load("EVC-SS", device="cpu", weights=tmp_path / "w")
    result = codec.encode(smooth_image(48, 80, seed=2), 0.7)
    (tmp_path / "a.evc").write_bytes(result.data)
    np.save(tmp_path / "expected.npy", np.asarray(result.reconstruction))
    script = (
        "import sys, numpy as np, evc; "
        f"c = evc.load(weights={str(tmp_path / 'w')!r}, device='cpu'); "
        f"img = c.decompress(open({str(tmp_path / 'a.evc')!r}, 'rb').read()); "
        f"sys.exit(0 if np.array_equal(np.asarray(img), np.load({str(tmp_path / 'expected.npy')!r})) else 3)"
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=300).returncode == 0


def test_weights_round_trip_through_safetensors(tmp_path) -> None:
    from evc.models.weights import read_metadata, save_weights

    model = evc.create_model("EVC-LS", seed=2)
    files = save_weights(model, tmp_path, "EVC-LS", {"training_steps": 12})
    assert len(files) >= 2 and all(f.stat().st_size < 16 * 2**20 for f in files)  # parts under 16 MiB
    meta = read_metadata(tmp_path)
    assert meta["evc.model"] == "EVC-LS" and meta["training_steps"] == "12"
    codec = evc.load(weights=tmp_path, device="cpu")
    assert codec.name == "EVC-LS"
    for name, tensor in model.state_dict().items():
        assert torch.equal(codec.model.state_dict()[name], tensor.half().float()), name
    with pytest.raises(evc.ModelError, match="already holds weights"):
        save_weights(model, tmp_path, "EVC-LS")
    with pytest.raises(evc.ModelError, match="holds weights for EVC-LS"):
        evc.load("EVC-SS", weights=tmp_path)
    files[0].unlink()
    with pytest.raises(evc.ModelError, match="parts"):
        evc.load(weights=tmp_path)


def test_one_loader_settles_which_model_the_weights_hold(tmp_path) -> None:
    """evc.models.weights.load_model: the model the metadata names, which a name given must match; the
    name or a default where the metadata names none; the caller's random state untouched."""
    from safetensors.torch import save_file

    from evc.models.weights import load_model, save_weights

    model = evc.create_model("EVC-SS", seed=4)
    save_weights(model, tmp_path / "named", "EVC-SS")
    state = torch.random.get_rng_state()
    loaded, spec, metadata = load_model(tmp_path / "named")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert spec.name == "EVC-SS" and metadata["evc.model"] == "EVC-SS"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.half().float()), name
    assert load_model(tmp_path / "named", "ss", default="EVC-LL")[1].name == "EVC-SS"  # the metadata wins the default
    with pytest.raises(evc.ModelError, match="holds weights for EVC-SS, not EVC-LL"):
        load_model(tmp_path / "named", "EVC-LL")
    bare = tmp_path / "bare.safetensors"  # a state without metadata: the caller says which model it is
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(bare))
    with pytest.raises(evc.ModelError, match="does not say which model it holds"):
        load_model(bare)
    assert load_model(bare, default="EVC-SS")[1].name == load_model(bare, "EVC-SS")[1].name == "EVC-SS"
    with pytest.raises(evc.ModelError, match="do not fit this model"):
        load_model(bare, "EVC-LL")


def test_untrained_models_are_refused_without_weights() -> None:
    untrained = next(name for name, spec in evc.MODELS.items() if not spec.has_weights())
    with pytest.raises(evc.UntrainedModelError, match="untrained"):
        evc.load(untrained)
    with pytest.raises(evc.ModelError, match="unknown model"):
        evc.load("EVC-XX")


@pytest.mark.parametrize("name", ["EVC-SS", "Scale-SS"])
def test_compress_fast_path_writes_the_same_file_as_encode(name: str) -> None:
    codec = random_codec(name)
    image = smooth_image(40, 40, seed=8)
    level = 1 if name.startswith("Scale") else None
    assert codec.compress(image, 0.4, encoder_level=level) == codec.encode(image, 0.4, encoder_level=level).data
    assert codec.compress(image, q_index=77) == codec.encode(image, q_index=77).data


def test_decoding_with_another_thread_count_is_exact_or_refused(tmp_path) -> None:
    """Entropy parameters do not depend on the CPU thread count, so the latent decodes exactly."""
    codec = random_codec("EVC-MM")
    image = smooth_image(128, 192, seed=11)
    data = codec.compress(image, 0.5)
    expected = np.asarray(codec.decompress(data), dtype=np.int16)
    for threads in (1, 3):
        # The codec codes under its own thread setting (torch.set_num_threads before a call is overridden).
        decoder = evc.Codec(codec.model, "EVC-MM", device="cpu", threads=threads)
        got = np.asarray(decoder.decompress(data), dtype=np.int16)
        # The latent is exact; the synthesis transform may round differently in the last bit.
        assert np.abs(got - expected).max() <= 1


def test_symbol_checksum_mismatch_is_refused() -> None:
    from evc.bitstream.container import parse, pack

    codec = random_codec("EVC-SS")
    data = codec.compress(smooth_image(32, 32), 0.5)
    header, streams = parse(data)
    forged = pack(type(header)(**{**header.__dict__, "symbols_crc": header.symbols_crc ^ 1}), streams)
    with pytest.raises(FormatError, match="checksum mismatch"):
        codec.decompress(forged)


def test_pixel_limit_is_enforced_on_both_sides() -> None:
    from evc.bitstream.container import parse, pack

    codec = random_codec("EVC-SS")
    data = codec.compress(smooth_image(32, 32), 0.5)
    header, streams = parse(data)
    huge = pack(type(header)(**{**header.__dict__, "width": 60000, "height": 60000}), streams)
    with pytest.raises(FormatError, match="over the limit"):
        codec.decompress(huge)
    small = evc.Codec(codec.model, "EVC-SS")
    small.max_pixels = 32 * 31
    with pytest.raises(evc.ImageError, match="exceeds the limit"):
        small.compress(smooth_image(32, 32))


def test_training_forward_refuses_unpadded_input() -> None:
    with pytest.raises(ValueError, match="multiples of 64"):
        random_codec("EVC-SS").model(torch.rand(1, 3, 60, 64), torch.tensor([0]))


def test_threads_sharing_a_codec_get_what_sequential_calls_get() -> None:
    """A server shares one codec between its workers: concurrent compress and decompress calls give
    the same bytes and pixels as the same calls one at a time."""
    image = smooth_image(48, 80, seed=3)
    qualities = (0.2, 0.5, 0.8, 0.2, 0.5, 0.8)
    sequential = random_codec("EVC-SS")
    expected = [(data, np.asarray(sequential.decompress(data)))
                for data in (sequential.compress(image, q) for q in qualities)]
    shared = random_codec("EVC-SS")

    def work(i: int) -> tuple[bytes, np.ndarray]:
        data = shared.compress(image, qualities[i])
        return data, np.asarray(shared.decompress(data))

    got = run_in_threads(work, len(qualities))
    for i, (data, pixels) in enumerate(expected):
        assert isinstance(got[i], tuple), got[i]
        assert got[i][0] == data and np.array_equal(got[i][1], pixels), f"call {i} differs"
