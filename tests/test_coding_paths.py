"""Coding paths: exact vs float entropy parameters, sub-streams, the coding thread, the fast transform
path and tiles. Whatever path wrote a file, every path decodes it, with the same latent."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import evc
from evc.bitstream.container import parse
from evc.errors import FormatError
from evc.entropy.latent_codec import CodingOptions, decoding_options
from evc.nn.tile_policy import TilePolicy

from conftest import smooth_image


def _model(name: str = "EVC-SS", seed: int = 3) -> evc.models.evc.EVC:
    return evc.create_model(name, seed=seed)


def _codec(model, **options) -> evc.Codec:
    name = "Scale-SS" if isinstance(model, evc.models.scalable.ScalableEVC) else "EVC-SS"
    return evc.Codec(model, name, device="cpu", **options)


def _decoded_latent(codec: evc.Codec, data: bytes) -> tuple[np.ndarray, torch.Tensor]:
    """Decoded pixels and the synthesis transform's input (the dequantised latent)."""
    seen: list[torch.Tensor] = []
    original = codec.model.synthesise

    def recording(y_hat, q_step, divisor, run):
        seen.append((y_hat * q_step).float() * divisor)
        return original(y_hat, q_step, divisor, run)

    codec.model.synthesise = recording
    try:
        pixels = np.asarray(codec.decompress(data), dtype=np.int16)
    finally:
        del codec.model.synthesise
    return pixels, seen[0]


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("substreams", [1, 3])
def test_round_trip_and_flags(exact: bool, substreams: int) -> None:
    codec = _codec(_model(), exact=exact, substreams=substreams)
    result = codec.encode(smooth_image(70, 90, seed=1), 0.6)
    header, streams = parse(result.data)
    assert header.exact == exact and header.skip_certain and len(streams) == 1 + 2 * substreams
    info = evc.file_info(result.data)
    assert info.exact == exact and info.substreams == substreams and info.format_version == 3
    assert info.arithmetic == ("int8" if exact else None)
    assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))


def test_float64_arithmetic_writes_version_2_and_both_versions_decode_anywhere() -> None:
    """Format version 2 (float64 fixed point) is still written on request and read; the two exact
    arithmetics make different files of nearly the same size, and any codec decodes both."""
    model = _model()
    image = smooth_image(70, 90, seed=3)
    int8 = _codec(model).encode(image, 0.6)
    float64 = _codec(model, arithmetic="float64").encode(image, 0.6)
    assert parse(int8.data)[0].version == 3 and parse(float64.data)[0].version == 2
    assert evc.file_info(float64.data).arithmetic == "float64"
    assert int8.data != float64.data
    assert abs(len(int8.data) - len(float64.data)) <= 0.05 * len(float64.data)
    for decoder in (_codec(model), _codec(model, arithmetic="float64")):
        for result in (int8, float64):
            assert np.array_equal(np.asarray(decoder.decompress(result.data)), np.asarray(result.reconstruction))
    with pytest.raises(ValueError, match="arithmetic"):
        _codec(model, arithmetic="int4")


def test_the_decoder_follows_the_file_not_its_own_settings() -> None:
    model = _model()
    image = smooth_image(64, 80, seed=2)
    files = {
        (exact, n): _codec(model, exact=exact, substreams=n).encode(image, 0.5) for exact in (True, False) for n in (1, 4)
    }
    decoder = _codec(model, exact=True, substreams=2)
    for result in files.values():
        assert np.array_equal(np.asarray(decoder.decompress(result.data)), np.asarray(result.reconstruction))


def test_substream_counts_outside_the_format_are_refused() -> None:
    with pytest.raises(ValueError, match="substreams"):
        CodingOptions(substreams=9)
    for count in (2, 4, 19):
        with pytest.raises(FormatError, match="streams"):
            decoding_options(count, exact=True, skip_certain=True, arithmetic="int8")


def test_the_coding_thread_writes_the_same_bytes() -> None:
    codec = _codec(_model())
    image = smooth_image(64, 64, seed=4)
    rgb = np.asarray(image)
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float() / 255
    y = codec.model.analyse(x)
    inline, x_inline = codec.model.compress_latent(y, 1.0, coder=None)
    threaded, x_threaded = codec.model.compress_latent(y, 1.0, coder=codec.coder)
    assert inline == threaded and torch.equal(x_inline, x_threaded)


def test_exact_files_decode_with_other_cpu_arithmetic() -> None:
    """Another CPU kind, simulated: other thread counts and convolutions without oneDNN. The exact
    path's latent is identical bit for bit; the float path may only decode the same symbols (its latent
    then equal up to float rounding of the means) or refuse. The thread count is the decoder's own
    setting: the codec codes under its thread policy, whatever torch.set_num_threads said before."""
    model = _model("EVC-MM", seed=5)
    image = smooth_image(128, 128, seed=5)
    exact_file = _codec(model, exact=True).compress(image, 0.5)
    float_file = _codec(model, exact=False).compress(image, 0.5)
    _, reference = _decoded_latent(_codec(model, threads=1), exact_file)
    _, float_reference = _decoded_latent(_codec(model, threads=1), float_file)  # as where it was encoded
    previous = torch.get_num_threads()
    try:
        for threads, onednn in ((1, True), (3, True), (2, False)):
            decoder = _codec(model, threads=threads)
            with torch.backends.mkldnn.flags(enabled=onednn):
                _, latent = _decoded_latent(decoder, exact_file)
                assert torch.equal(latent, reference), (threads, onednn)
                try:
                    _, float_latent = _decoded_latent(decoder, float_file)
                except FormatError as exc:  # a checksum mismatch, or a coder derailed before it
                    assert "decode it where it was encoded" in str(exc)
                else:  # decoded: the same symbols (the checksum holds), so the latent differs from the
                    # encoding machine's only by float rounding of the means mu (measured: 1.8e-7 with
                    # oneDNN off), never by a symbol (a step of q_step, far above 1e-4)
                    assert torch.allclose(float_latent, float_reference, rtol=0, atol=1e-4), (threads, onednn)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_fast_and_plain_paths_decode_each_others_files(precision: str) -> None:
    """Same device: a fast-path file decodes on the plain path and vice versa, with the same latent;
    only the synthesis transform's precision separates the pixels."""
    plain = _codec(_model(seed=6))
    fast = _codec(_model(seed=6), precision=precision, channels_last=True)
    assert plain.fingerprint == fast.fingerprint
    image = smooth_image(96, 128, seed=6)
    for encoder in (plain, fast):
        result = encoder.encode(image, 0.5)
        pixels_plain, latent_plain = _decoded_latent(plain, result.data)
        pixels_fast, latent_fast = _decoded_latent(fast, result.data)
        assert torch.equal(latent_plain, latent_fast)
        # Each decoder gives exactly what an encoder on the same path reconstructs.
        assert np.array_equal(pixels_plain if encoder is plain else pixels_fast,
                              np.asarray(result.reconstruction, dtype=np.int16))
        assert np.abs(pixels_plain - pixels_fast).mean() < 2.0


def _small_tiles(codec: evc.Codec) -> evc.Codec:
    """Tile every network of every image, in 128-pixel tiles."""
    codec.execution = replace(codec.execution, tile_policy=TilePolicy(untiled_max_pixels=0, tile_pixels=128))
    return codec


@pytest.mark.parametrize("exact", [True, False])
def test_tiled_coding_round_trips(exact: bool) -> None:
    codec = _small_tiles(_codec(_model(), exact=exact))
    result = codec.encode(smooth_image(200, 330, seed=7), 0.5)
    assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))


def test_tiles_leave_the_exact_latent_unchanged_and_no_seams() -> None:
    """An untiled file decodes tile by tile with the identical latent (exact arithmetic, halos as wide as
    the receptive fields) and pixels equal up to float rounding, no worse at tile borders."""
    model = _model(seed=8)
    codec = _codec(model)
    image = smooth_image(256, 384, seed=8)
    data = codec.compress(image, 0.5)
    untiled_pixels, untiled_latent = _decoded_latent(codec, data)
    _small_tiles(codec)
    tiled_pixels, tiled_latent = _decoded_latent(codec, data)
    assert torch.equal(tiled_latent, untiled_latent)
    difference = np.abs(tiled_pixels - untiled_pixels)
    assert difference.max() <= 1
    border = np.zeros(difference.shape[:2], dtype=bool)
    for k in range(128, 384, 128):
        border[:, k - 2 : k + 2] = True
        border[k - 2 : k + 2, :] = True
    assert difference[border].mean() <= difference[~border].mean() + 0.01


def test_scalable_model_codes_in_tiles() -> None:
    codec = _small_tiles(evc.Codec(evc.create_model("Scale-SS", seed=1), "Scale-SS", device="cpu"))
    result = codec.encode(smooth_image(130, 200, seed=9), 0.5, encoder_level=2)
    assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_exact_files_cross_between_cpu_and_cuda() -> None:
    model_cpu, model_gpu = _model(seed=10), _model(seed=10)
    on_cpu = evc.Codec(model_cpu, "EVC-SS", device="cpu")
    on_gpu = evc.Codec(model_gpu, "EVC-SS", device="cuda")
    image = smooth_image(96, 160, seed=10)
    for encoder, decoder in ((on_cpu, on_gpu), (on_gpu, on_cpu)):
        result = encoder.encode(image, 0.5)
        own_pixels, own_latent = _decoded_latent(encoder, result.data)
        pixels, latent = _decoded_latent(decoder, result.data)
        assert torch.equal(latent.cpu(), own_latent.cpu())
        assert np.abs(pixels - own_pixels).max() <= 1


@cuda
def test_gpu_fast_path_decodes_plain_files_and_back() -> None:
    plain = evc.Codec(_model(seed=11), "EVC-SS", device="cuda")
    fast = evc.Codec(_model(seed=11), "EVC-SS", device="cuda", precision="float16", channels_last=True)
    image = smooth_image(128, 192, seed=11)
    for encoder in (plain, fast):
        result = encoder.encode(image, 0.5)
        _, latent_plain = _decoded_latent(plain, result.data)
        _, latent_fast = _decoded_latent(fast, result.data)
        assert torch.equal(latent_plain, latent_fast)
        assert np.array_equal(np.asarray(encoder.decompress(result.data)), np.asarray(result.reconstruction))
