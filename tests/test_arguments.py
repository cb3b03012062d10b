"""One check per public argument, shared by the API and the command line (issue 14, kind 3).

For every bad value the API raises TypeError (wrong type) or ValueError (wrong value) with a message
that is true for that value, and the command line refuses the same value with the same message (one
line, exit 2, nothing written). Before, the API took target_psnr=nan (best quality) and -5.
"""

from __future__ import annotations


import numpy as np
import pytest

import evc
from evc.cli.main import main

from conftest import random_codec

IMAGE = np.full((8, 8, 3), 128, np.uint8)
NAN, INF = float("nan"), float("inf")

# (API keyword, bad value, exception, words the message must contain)
RATE_CASES = [
    ("quality", NAN, ValueError, "quality must be a number in [0, 1], got nan"),
    ("quality", -0.1, ValueError, "quality must be a number in [0, 1], got -0.1"),
    ("quality", 1.5, ValueError, "got 1.5"),
    ("quality", INF, ValueError, "got inf"),
    ("quality", True, TypeError, "got True (a bool)"),
    ("quality", "0.5", TypeError, "got '0.5'"),
    ("quality", [0.5], TypeError, "got a list"),
    ("q_index", 0, ValueError, "q_index must be an integer in 1..65535, got 0"),
    ("q_index", 70000, ValueError, "got 70000"),
    ("q_index", -3, ValueError, "got -3"),
    ("q_index", 50.0, TypeError, "q_index must be an integer in 1..65535, got 50.0"),
    ("q_index", NAN, TypeError, "got nan"),
    ("q_index", False, TypeError, "got False (a bool)"),
    ("target_bpp", 0, ValueError, "target_bpp must be a positive finite number (bits per pixel), got 0"),
    ("target_bpp", -1.0, ValueError, "got -1.0"),
    ("target_bpp", NAN, ValueError, "got nan"),
    ("target_bpp", INF, ValueError, "got inf"),
    ("target_bpp", True, TypeError, "got True (a bool)"),
    ("target_psnr", NAN, ValueError, "target_psnr must be a positive finite number (dB), got nan"),
    ("target_psnr", -5, ValueError, "got -5"),
    ("target_psnr", 0.0, ValueError, "got 0.0"),
    ("target_psnr", INF, ValueError, "got inf"),
    ("target_psnr", -INF, ValueError, "got -inf"),
    ("target_psnr", "30", TypeError, "got '30'"),
]


@pytest.mark.parametrize("keyword, value, error, message", RATE_CASES, ids=lambda v: repr(v))
def test_api_refuses_bad_rate_arguments(keyword, value, error, message):
    codec = random_codec("EVC-SS")
    for method in (codec.compress, codec.encode):
        with pytest.raises(error) as refused:
            method(IMAGE, **{keyword: value})
        assert message in str(refused.value)


def test_api_accepts_numpy_numbers_and_ints():
    codec = random_codec("EVC-SS")
    assert codec.compress(IMAGE, np.float32(0.5)) == codec.compress(IMAGE, 0.5) == codec.compress(IMAGE, np.float64(0.5))
    assert codec.compress(IMAGE, q_index=np.int64(80)) == codec.compress(IMAGE, q_index=80)
    assert codec.q_index(1) == codec.q_index(1.0)


def test_the_rate_is_settled_once_into_a_typed_value():
    """arguments.rate checks the rate once into a frozen Rate, which the codec hands down unchecked."""
    import dataclasses

    from evc.arguments import DEFAULT_QUALITY, Rate, rate

    assert rate() == Rate(quality=DEFAULT_QUALITY) and not rate().is_target
    checked = rate(q_index_value=np.int64(80))
    assert checked == Rate(q_index=80) and type(checked.q_index) is int
    assert rate(np.float32(0.5)) == Rate(quality=0.5) and type(rate(np.float32(0.5)).quality) is float
    assert rate(target_bpp_value=1).is_target and rate(target_psnr_value=30.0) == Rate(target_psnr=30.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.q_index = 3  # type: ignore[misc]


def test_one_rate_at_most():
    codec = random_codec("EVC-SS")
    with pytest.raises(ValueError, match="at most one of .* \\(got quality, target_psnr\\)"):
        codec.compress(IMAGE, 0.5, target_psnr=30.0)


# The CLI parses text, so only values text can carry (numbers, nan, inf), given as --option=value.
CLI_CASES = [c for c in RATE_CASES if not isinstance(c[1], (bool, list, str))]


@pytest.mark.parametrize("keyword, value, error, message", CLI_CASES, ids=lambda v: repr(v))
def test_cli_refuses_with_the_api_message(capsys, tmp_path, keyword, value, error, message):
    with pytest.raises(error) as refused:  # the API's own refusal, checked for its words as above
        random_codec("EVC-SS").compress(IMAGE, **{keyword: value})
    assert message in str(refused.value)
    option = f"--{keyword.replace('_', '-')}={value}"
    code = main(["encode", str(tmp_path / "missing.png"), str(tmp_path / "x.evc"), option])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"evc: error: argument {option.split('=')[0]}: ")
    assert str(refused.value) in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(substreams=0), ValueError, "substreams must be an integer in 1..8, got 0"),
        (dict(substreams=9), ValueError, "got 9"),
        (dict(substreams=2.0), TypeError, "got 2.0"),
        (dict(substreams=True), TypeError, "got True (a bool)"),
        (dict(precision="fp16"), ValueError, "precision must be one of float32, float16, bfloat16, got 'fp16'"),
        (dict(precision=None), TypeError, "got a NoneType"),
        (dict(exact="false"), TypeError, "exact must be True or False, got 'false'"),
        (dict(exact=1), TypeError, "got 1"),
        (dict(channels_last="yes"), TypeError, "channels_last must be True or False"),
    ],
)
def test_codec_options_are_checked(options, error, message):
    with pytest.raises(error) as refused:
        evc.Codec(evc.create_model("EVC-SS", seed=0), "EVC-SS", device="cpu", **options)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "value, error, message",
    [(0, ValueError, "max_pixels must be a positive integer, got 0"), (-5, ValueError, "got -5"),
     (1.5e6, TypeError, "got 1500000.0"), (None, TypeError, "got a NoneType"), (True, TypeError, "(a bool)")],
)
def test_max_pixels_is_checked(value, error, message):
    codec = random_codec("EVC-SS")
    with pytest.raises(error) as refused:
        codec.max_pixels = value
    assert message in str(refused.value)
    assert codec.max_pixels == evc.codec.DEFAULT_MAX_PIXELS


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--substreams", "0"], "argument --substreams: substreams must be an integer in 1..8, got 0"),
        (["--substreams", "two"], "substreams must be an integer in 1..8, got 'two'"),
        (["--precision", "fp16"], "precision must be one of float32, float16, bfloat16, got 'fp16'"),
        (["--max-pixels", "0"], "argument --max-pixels: max_pixels must be a positive integer, got 0"),
        (["--max-pixels", "1e6"], "max_pixels must be a positive integer, got 1000000.0"),
        (["--max-pixels", "many"], "max_pixels must be a positive integer, got 'many'"),
        (["--q-index", "1.5"], "q_index must be an integer in 1..65535, got 1.5"),
        (["--encoder-level", "x"], "encoder_level must be an integer, got 'x'"),
    ],
)
def test_cli_options_share_the_checks(capsys, tmp_path, argv, message):
    code = main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.evc"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_encoder_level():
    scalable = random_codec("Scale-SS")
    for value, error, message in [
        (4, ValueError, "encoder_level must be an integer in 0..3 for Scale-SS, got 4"),
        (-1, ValueError, "got -1"),
        (1.0, TypeError, "got 1.0"),
        (True, TypeError, "(a bool)"),
    ]:
        with pytest.raises(error, match=message.replace("(", "\\(").replace(")", "\\)").replace(".", "\\.")):
            scalable.compress(IMAGE, encoder_level=value)
    with pytest.raises(ValueError, match="EVC-SS has one encoder"):
        random_codec("EVC-SS").compress(IMAGE, encoder_level=0)


def test_load_arguments():
    with pytest.raises(TypeError, match="name must be a model name"):
        evc.load(5)
    with pytest.raises(TypeError, match="weights must be a path"):
        evc.load("EVC-SS", weights=3)
    with pytest.raises(evc.ModelError, match="unknown model"):
        evc.load("EVC-XX")


def test_device_is_chosen_in_one_place_for_codec_and_trainer() -> None:
    """evc.arguments.device: the codec and the trainer refuse the same bad devices with the same message."""
    import torch

    from evc import arguments
    from evc.errors import EVCError
    from evc.train.trainer import start_processes

    assert arguments.device("cpu") == torch.device("cpu")
    assert arguments.device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, message in (("gpu0", "unknown device 'gpu0'"), ("meta", "'meta' is not supported")):
        with pytest.raises(EVCError, match=message):
            arguments.device(bad)
        with pytest.raises(EVCError, match=message):
            start_processes(bad)
        with pytest.raises(EVCError, match=message):
            evc.load("EVC-SS", device=bad)
    if not torch.cuda.is_available():
        with pytest.raises(EVCError, match="CUDA is not available"):
            start_processes("cuda")
