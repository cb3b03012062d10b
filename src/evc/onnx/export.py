"""`evc export`: one model's networks as ONNX files, with the coder's tables and a manifest, for
:mod:`evc.onnx.runtime` (which decodes and encodes on ONNX Runtime, without torch).

The float networks (g_a, h_a with the rate's scaling, g_s with the dequantisation) are exported by
PyTorch's exporter from the model's own methods, so the graphs compute what the codec computes; the
entropy-parameter networks are built as integer graphs by :mod:`evc.onnx.integer_graph` from the same
walk as the PyTorch int8 path. The layout of the folder is :mod:`evc.onnx.manifest`'s.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import evc
from evc.extras import require

onnx = require("onnx", "onnx")  # before the graph builder imports it: a missing extra is named

from evc.bitstream.container import FORMAT_VERSION  # noqa: E402
from evc.codec import Codec, load  # noqa: E402
from evc.entropy.gaussian import scale_pmfs, scale_table  # noqa: E402
from evc.entropy.streams import PIXELS_PER_LATENT  # noqa: E402
from evc.errors import ModelError  # noqa: E402
from evc.nn.tile_policy import TiledNetwork  # noqa: E402
from evc.onnx.integer_graph import OPSET, hyper_graph, step_two_graph  # noqa: E402
from evc.onnx.manifest import GRAPHS, TABLES, Manifest, pack_pmfs  # noqa: E402

# The dummy input's side in image pixels: the smallest whole image (one hyper-latent pixel).
_DUMMY_SIDE = 64


class _Analysis(nn.Module):
    """g_a as the codec runs it: the latent of every encoder level (a model with one has one)."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.model = codec.model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.level_latents(x))


class _HyperAnalysis(nn.Module):
    """The latent divided by the rate's step at ``q_scale``, and h_a of it (before rounding)."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.model = codec.model

    def forward(self, y: torch.Tensor, q_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = y / self.model.rate.divisor(q_scale)
        return scaled, self.model.h_a(scaled)


class _Synthesis(nn.Module):
    """g_s of the decoded latent (y_hat and Q_step in float64, as the exact path gives them)."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.model = codec.model

    def forward(self, y_hat: torch.Tensor, q_step: torch.Tensor, q_scale: torch.Tensor) -> torch.Tensor:
        return self.model.synthesise(y_hat, q_step, self.model.rate.divisor(q_scale))


def _traced(module: nn.Module, inputs: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
            spatial: dict[str, tuple[str, str]]) -> onnx.ModelProto:
    """``module`` exported by PyTorch's (TorchScript) exporter, with dynamic heights and widths."""
    buffer = io.BytesIO()
    axes = {name: {2: height, 3: width} for name, (height, width) in spatial.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes: nothing a user can act on
        torch.onnx.export(module, inputs, buffer, input_names=input_names, output_names=output_names,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    return model


def _tables(codec: Codec) -> dict[str, np.ndarray]:
    """The coder's tables (see :mod:`evc.onnx.manifest`), from the codec's own sources."""
    return {
        "scale_table": scale_table().numpy().astype(np.float32),
        **pack_pmfs(list(scale_pmfs()), "gaussian"),
        **pack_pmfs(codec.model.latent_codec.z_tables()._pmfs, "z"),  # the tables the codec codes z with
    }


def _tile_plans(codec: Codec) -> dict[str, list[int]]:
    """Per graph: (image pixels per input pixel, halo in input pixels), the tiling the PyTorch codec runs
    the same networks with (its latent codec's tiled networks; the transforms as Execution tiles them).
    A scalable model's encoders are alike: the first one's plan serves all (their mean is pointwise)."""
    model = codec.model
    encoder = model.g_a[0] if model.num_levels > 1 else model.g_a
    latent_codec = model.latent_codec
    networks = {
        "g_a": TiledNetwork(encoder, 1),
        "h_a": latent_codec._tiled_h_a,
        "hyper": latent_codec._tiled_hyper,
        "step_two": latent_codec._tiled_step_two,
        "g_s": TiledNetwork(model.g_s, PIXELS_PER_LATENT),
    }
    return {name: [network.input_pixel, network.plan()[2]] for name, network in networks.items()}


def export(folder: str | Path, name: str | None = None, weights: str | Path | None = None) -> Manifest:
    """Write the ONNX export of a model (shipped weights, or ``weights``; as :func:`evc.load` takes
    them) into ``folder`` (made if missing; files of an earlier export are replaced). Returns its
    manifest. Raises ModelError for an unknown model, unusable weights, or weights the int8
    arithmetic of format version 3 cannot hold (which such a codec writes version 2 files for,
    which ONNX Runtime does not decode); UntrainedModelError as :func:`evc.load`.
    """
    codec = load(name, device="cpu", weights=weights)
    model = codec.model
    try:
        hyper, step_two = hyper_graph(model.entropy_networks), step_two_graph(model.entropy_networks)
    except ValueError as exc:
        raise ModelError(f"{codec.name}'s weights cannot be exported for exact decoding: {exc} (format version 3 "
                         "needs 8-bit integer weights)") from None
    side = _DUMMY_SIDE
    image = torch.rand(1, 3, side, side)
    levels = model.num_levels
    latent_names = ["y"] if levels == 1 else [f"y{k}" for k in range(levels)]
    latent = "latent_height", "latent_width"
    graphs = {
        "g_a": _traced(_Analysis(codec), (image,), ["x"], latent_names,
                       {"x": ("height", "width"), **{n: latent for n in latent_names}}),
        "h_a": _traced(_HyperAnalysis(codec), (torch.zeros(1, 192, side // 16, side // 16), torch.tensor(0.5)),
                       ["y", "q_scale"], ["y_scaled", "z"],
                       {"y": latent, "y_scaled": latent, "z": ("hyper_height", "hyper_width")}),
        "hyper": hyper,
        "step_two": step_two,
        "g_s": _traced(_Synthesis(codec), (torch.zeros(1, 192, side // 16, side // 16, dtype=torch.float64),
                                           torch.ones(1, 192, side // 16, side // 16, dtype=torch.float64),
                                           torch.tensor(0.5)),
                       ["y_hat", "q_step", "q_scale"], ["x_hat"],
                       {"y_hat": latent, "q_step": latent, "x_hat": ("height", "width")}),
    }
    assert tuple(graphs) == GRAPHS
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for graph_name, graph in graphs.items():
        onnx.save_model(graph, str(folder / f"{graph_name}.onnx"))
    np.savez(folder / TABLES, **_tables(codec))
    manifest = Manifest(codec.name, codec.spec.model_id, FORMAT_VERSION, codec.fingerprint,
                        model.rate.anchor_q_scales(), levels, _tile_plans(codec), evc.__version__)
    manifest.write(folder)
    return manifest
