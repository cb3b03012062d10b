"""Mask decay structure: masks leave the teacher unchanged, and merging is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import evc
from evc.distill.mask_decay import (
    MaskedTeacher,
    channel_importance,
    merge,
    removed_masks,
    select_channels,
    top_channels,
    transform_groups,
)
from evc.eval.complexity import count_parameters
from evc.models.variable_rate import NUM_ANCHORS
from evc.nn.blocks import OUTPUT, STREAM, ConvFFN, DepthConvBlock, ResidualBlockDown, conv1x1
from evc.nn.transforms import AnalysisTransform


@pytest.fixture(scope="module")
def teacher() -> evc.models.evc.EVC:
    return evc.create_model("EVC-LL", seed=0).eval()


def _x(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(seed))


def test_masks_at_one_leave_the_teacher_unchanged(teacher) -> None:
    x = _x()
    with torch.no_grad():
        before_y = teacher.g_a(x)
        before_x = teacher.g_s(before_y)
    masked = MaskedTeacher(teacher, "S", "S")
    try:
        with torch.no_grad():
            assert torch.equal(teacher.g_a(x), before_y) and torch.equal(teacher.g_s(before_y), before_x)
        # ... and yet in the graph: mask decay trains them through the task loss, so a mask applied
        # detached (a constant 1) would pass the check above and never learn. A 32-px crop keeps it fast.
        teacher.g_s(teacher.g_a(x[:, :, :32, :32])).square().mean().backward()
        for name, mask in masked.masks.items():
            assert mask.grad is not None and bool((mask.grad != 0).any()), name
    finally:
        masked.remove_hooks()
        teacher.zero_grad(set_to_none=True)  # the module's teacher is shared: leave no gradients behind
    with torch.no_grad():
        assert torch.equal(teacher.g_a(x), before_y)  # hooks removed: the teacher is itself again


def test_groups_follow_the_channel_plans(teacher) -> None:
    masked = MaskedTeacher(teacher, "M", "S")
    try:
        widths = {g.name: (g.width, g.keep) for g in masked.groups}
        assert widths["g_a.0.stream"] == (192, 128) and widths["g_a.2.stream"] == (192, 192)
        assert widths["g_a.1.hidden"] == (768, 512)
        assert widths["g_s.0.stream"] == (192, 128) and widths["g_s.2.stream"] == (192, 64)
        assert widths["g_s.2.dw"] == (192, 64) and widths["g_s.1.rb_hidden"] == (192, 64)
        kept = select_channels(masked)
        assert all(len(kept[g.name]) == g.keep for g in masked.groups)
        importance = channel_importance(masked.groups[0])
        assert importance.shape == (masked.groups[0].width,) and (importance > 0).all()
        assert torch.equal(kept[masked.groups[0].name], top_channels(importance, masked.groups[0].keep))
        # One mask a group, under the group's key (parameter names hold no dots).
        assert sorted(masked.masks) == sorted(g.key for g in masked.groups)
        assert next(g for g in masked.groups if g.name == "g_a.0.stream").key == "g_a_0_stream"
    finally:
        masked.remove_hooks()


def test_top_channels_are_the_highest_in_ascending_order() -> None:
    assert top_channels(torch.tensor([0.1, 0.9, 0.5, 0.7, 0.0]), 3).tolist() == [1, 2, 3]
    assert top_channels(torch.tensor([3.0, 1.0, 2.0]), 1).tolist() == [0]


@pytest.mark.parametrize(("student", "enc", "dec"), [("EVC-SS", "S", "S"), ("EVC-MM", "M", "M"), ("EVC-LS", None, "S")])
def test_merge_is_exact(student: str, enc, dec) -> None:
    teacher = evc.create_model("EVC-LL", seed=1).eval()
    masked = MaskedTeacher(teacher, enc, dec)
    try:
        kept = select_channels(masked)
        generator = torch.Generator().manual_seed(3)
        with torch.no_grad():  # arbitrary positive masks, exactly zero on the removed channels
            for group in masked.groups:
                values = 0.25 + torch.rand(group.width, generator=generator)
                drop = torch.ones(group.width, dtype=torch.bool)
                drop[kept[group.name]] = False
                values[drop] = 0.0
                masked.masks[group.key].copy_(values)
        assert all(bool((m == 0).all()) for m in removed_masks(masked, kept).values())
        merged = merge(masked, kept, student).eval()
        assert count_parameters(merged) == count_parameters(evc.create_model(student))
        x = _x(1)
        with torch.no_grad():
            y_masked, y_merged = teacher.g_a(x), merged.g_a(x)
            assert torch.allclose(y_merged, y_masked, rtol=1e-4, atol=1e-4 * y_masked.abs().max().item())
            for anchor in range(NUM_ANCHORS):  # the synthesis of each anchor's quantised latent
                q_scale = teacher.rate.anchor_q_scale(torch.tensor([anchor]))
                out = teacher.rd_forward(x, y_masked, q_scale)
                y_hat = torch.round(y_masked / teacher.rate.divisor(q_scale))  # a latent in the right range
                a, b = teacher.g_s(y_hat), merged.g_s(y_hat)
                assert torch.allclose(b, a, rtol=1e-4, atol=1e-4 * a.abs().max().item()), anchor
                merged_out = merged.rd_forward(x, y_masked, q_scale)
                assert torch.allclose(merged_out.bpp, out.bpp, rtol=1e-4)  # the entropy model is shared
    finally:
        masked.remove_hooks()


def test_merged_student_codes_like_any_model(teacher) -> None:
    masked = MaskedTeacher(teacher, "S", "S")
    try:
        merged = merge(masked, select_channels(masked), "EVC-SS")
    finally:
        masked.remove_hooks()
    codec = evc.Codec(merged, "EVC-SS", "cpu")
    result = codec.encode(torch.rand(3, 40, 56), 0.5)
    assert np.array_equal(np.asarray(codec.decompress(result.data)), np.asarray(result.reconstruction))


def test_merge_refuses_a_student_of_other_widths(teacher) -> None:
    masked = MaskedTeacher(teacher, "S", "S")
    try:
        with pytest.raises(ValueError, match="widths"):
            merge(masked, select_channels(masked), "EVC-MM")
    finally:
        masked.remove_hooks()


class _FFNFirst(DepthConvBlock):
    """The same modules wired the other way round: only the description changes."""

    branches = (("ffn", "depth"),)


def _zeroed_channels_reach_every_consumer(model: evc.models.evc.EVC) -> None:
    """For each group, a mask zero on one channel must zero that channel of every consumer's input:
    the groups found by walking the descriptions put their hooks where forward actually computes."""
    masked = MaskedTeacher(model, "S", "S")
    seen: dict[int, torch.Tensor] = {}
    handles = [
        c.conv.register_forward_pre_hook(lambda m, inputs: seen.__setitem__(id(m), inputs[0]))
        for g in masked.groups
        for c in g.consumers
    ]
    try:
        for group in masked.groups:
            channel = group.width // 3
            with torch.no_grad():
                for g in masked.groups:
                    masked.masks[g.key].fill_(1.0)
                masked.masks[group.key][channel] = 0.0
                y = model.g_a(_x()[:, :, :32, :32])
                model.g_s(y)
            for consumer in group.consumers:
                assert (seen[id(consumer.conv)][:, channel] == 0).all(), (group.name, consumer.conv)
                assert (seen[id(consumer.conv)] != 0).any(), (group.name, consumer.conv)  # not vacuous
    finally:
        for handle in handles:
            handle.remove()
        masked.remove_hooks()


def test_groups_put_their_masks_where_forward_reads_them() -> None:
    _zeroed_channels_reach_every_consumer(evc.create_model("EVC-MM", seed=0).eval())


class _ReorderedAnalysis(AnalysisTransform):
    """g_a with its first depth-conv block wired FFN first, in every size (so a student has it too)."""

    def __init__(self, size: str = "L") -> None:
        super().__init__(size)  # type: ignore[arg-type]
        width = self.layers[1].depth.conv1.in_channels
        self.layers[1] = _FFNFirst(width, width)


def test_groups_follow_a_changed_description() -> None:
    model = evc.create_model("EVC-MM", seed=0).eval()
    g_a = _ReorderedAnalysis("M")
    g_a.load_state_dict(model.g_a.state_dict())  # same modules, same names
    model.g_a = g_a.eval()
    reordered = g_a.layers[1]
    names = [g.name for g in transform_groups(model, "S", None)][:4]
    assert names == ["g_a.0.rb_hidden", "g_a.0.stream", "g_a.0.hidden", "g_a.0.dw"]
    stream = transform_groups(model, "S", None)[1]
    assert [p.conv for p in stream.producers][2:] == [reordered.ffn.project, reordered.depth.conv2]
    _zeroed_channels_reach_every_consumer(model)


def test_mask_points_must_name_submodules_of_the_branches() -> None:
    # Checked when the class is defined: a rewiring that drops a masked submodule fails at once.
    with pytest.raises(TypeError, match="'conv1', which is in none of its branches"):

        class _NoConv1(ResidualBlockDown):
            branches = (("conv2", "act2"), ("shortcut",))

    with pytest.raises(TypeError, match="'stream'"):

        class _NoStream(ConvFFN):
            mask_points = {"hidden": "expand"}


class _MaskedAtOutput(ConvFFN):
    mask_points = {"hidden": "expand", STREAM: OUTPUT}  # but its identity branch passes the input on


class _NeverRead(ConvFFN):
    mask_points = {"hidden": "project", STREAM: "project"}  # nothing in the chain reads after project


@pytest.mark.parametrize(
    ("place", "replace", "message"),
    [
        ("ffn", lambda: _MaskedAtOutput(64, 256, nn.ReLU()), "at its output, but a branch passes its input on"),
        ("ffn", lambda: _NeverRead(64, 256, nn.ReLU()), "masks after 'project' are never read"),
        ("depth.adaptor", lambda: conv1x1(64, 64), "after 'conv2', but no branch passes its input on"),
    ],
)
def test_mask_points_that_do_not_fit_the_wiring_are_refused(place: str, replace, message: str) -> None:
    model = evc.create_model("EVC-SS", seed=0)
    owner, _, attr = f"layers.1.{place}".rpartition(".")
    setattr(model.g_a.get_submodule(owner), attr, replace())
    with pytest.raises(ValueError, match=message):
        transform_groups(model, "S", None)
