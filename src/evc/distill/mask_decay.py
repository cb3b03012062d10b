"""Mask decay, structure half: channel masks in a teacher's transforms, and their exact merge.

A mask is a per-channel scale (initialised to 1) placed right after a convolution, at the positions of
DESIGN.md section 4: in a residual block after conv1 and on the block output; in a depth-conv block
after the depthwise conv, after its last 1x1, after the FFN expansion and after the FFN projection.
Everything that adds into one residual stream shares that stream's mask, so a channel of the stream is
zero everywhere once its mask is.

Masks are applied as relu(mask), so they are never negative. (Leaky)ReLU is positively homogeneous,
so a mask folds exactly into the weights and bias of the convolution(s) before it; a channel whose mask
is zero is then deleted, with the matching input slice of the layers that read it. Merging a masked
teacher whose removed masks are zero yields a plain model of the student's registry structure
(EVC-MM, EVC-SS, ...) that computes the same function.

Only g_a and g_s shrink: the latent (192 channels) and the entropy model keep their size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from evc.models.evc import EVC
from evc.models.registry import create_model, get_spec
from evc.nn.blocks import DepthConvBlock
from evc.nn.transforms import CHANNEL_PLANS

# How a convolution touches a group's channels: "plain" (channel c is conv channel c), "subpel"
# (channel c is conv channels c*4 .. c*4+3 before PixelShuffle(2)), "depthwise" (in and out both c).
Layout = str


@dataclass
class Producer:
    conv: nn.Conv2d
    layout: Layout = "plain"
    scaled: bool = True  # False: the mask sits after a later conv of the group (conv1 before a depthwise)


@dataclass
class Consumer:
    conv: nn.Conv2d
    layout: Layout = "plain"  # how the conv's *input* channels map to the group ("subpel" never occurs)


@dataclass
class MaskGroup:
    """Channels that live or die together: one mask, the convs that produce them, those that read them."""

    name: str
    width: int  # in the teacher
    keep: int  # in the student
    producers: list[Producer] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    # Modules whose output the mask multiplies (forward hooks); output channel c = group channel c.
    hooked: list[nn.Module] = field(default_factory=list)


def _dcb_groups(prefix: str, dcb: DepthConvBlock, stream: MaskGroup, width: int, keep: int) -> list[MaskGroup]:
    """The depthwise and FFN-hidden groups of one block; adds the block's stream writers and readers."""
    depth, ffn = dcb.depth, dcb.ffn
    dw = MaskGroup(f"{prefix}.dw", width, keep)
    dw.producers += [Producer(depth.conv1, scaled=False), Producer(depth.depth_conv, "depthwise")]
    dw.consumers.append(Consumer(depth.conv2))
    dw.hooked.append(depth.depth_conv)
    hidden_width = ffn.expand.out_channels
    hidden = MaskGroup(f"{prefix}.hidden", hidden_width, hidden_width * keep // width)
    hidden.producers.append(Producer(ffn.expand))
    hidden.consumers.append(Consumer(ffn.project))
    hidden.hooked.append(ffn.expand)
    stream.producers += [Producer(depth.conv2), Producer(ffn.project)]
    stream.consumers += [Consumer(depth.conv1), Consumer(ffn.expand)]
    stream.hooked += [depth.conv2, ffn.project]
    return [dw, hidden]


def transform_groups(model: EVC, encoder_to: str | None, decoder_to: str | None) -> list[MaskGroup]:
    """Mask groups of ``model``'s g_a (shrinking to plan ``encoder_to``) and g_s (to ``decoder_to``).

    ``None`` leaves that transform out. Works on the L/M/S transforms of the registry.
    """
    groups: list[MaskGroup] = []
    if encoder_to is not None:
        layers = model.g_a.layers
        teacher, student = CHANNEL_PLANS[model.g_a.size], CHANNEL_PLANS[encoder_to]
        for stage in range(3):
            rb, dcb = layers[2 * stage], layers[2 * stage + 1]
            width, keep = teacher[stage], student[stage]
            hidden = MaskGroup(f"g_a.{stage}.rb_hidden", width, keep)
            hidden.producers.append(Producer(rb.conv1))
            hidden.consumers.append(Consumer(rb.conv2))
            hidden.hooked.append(rb.conv1)
            stream = MaskGroup(f"g_a.{stage}.stream", width, keep)
            stream.producers += [Producer(rb.conv2), Producer(rb.shortcut)]
            stream.hooked.append(rb)
            extra = _dcb_groups(f"g_a.{stage}", dcb, stream, width, keep)
            reader = layers[2 * stage + 2]  # the next RBdown, or the final conv to the latent
            if stage < 2:
                stream.consumers += [Consumer(reader.conv1), Consumer(reader.shortcut)]
            else:
                stream.consumers.append(Consumer(reader))
            groups += [hidden, stream, *extra]
    if decoder_to is not None:
        layers = model.g_s.layers
        teacher, student = CHANNEL_PLANS[model.g_s.size], CHANNEL_PLANS[decoder_to]
        for stage in range(3):  # RBup at 1, 3, 5 (widths C3, C2, C1); layers[0] works on the latent
            rb, dcb = layers[1 + 2 * stage], layers[2 + 2 * stage]
            width, keep = teacher[2 - stage], student[2 - stage]
            hidden = MaskGroup(f"g_s.{stage}.rb_hidden", width, keep)
            hidden.producers.append(Producer(rb.conv1.conv, "subpel"))
            hidden.consumers.append(Consumer(rb.conv2))
            hidden.hooked.append(rb.conv1)
            stream = MaskGroup(f"g_s.{stage}.stream", width, keep)
            stream.producers += [Producer(rb.conv2), Producer(rb.shortcut.conv, "subpel")]
            stream.hooked.append(rb)
            extra = _dcb_groups(f"g_s.{stage}", dcb, stream, width, keep)
            reader = layers[3 + 2 * stage]  # the next RBup, or the final subpel conv to RGB
            if stage < 2:
                stream.consumers += [Consumer(reader.conv1.conv), Consumer(reader.shortcut.conv)]
            else:
                stream.consumers.append(Consumer(reader.conv))
            groups += [hidden, stream, *extra]
    return groups


def _out_channels(index: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Conv output channels of group channels ``index``."""
    if layout == "subpel":
        return (index.view(-1, 1) * 4 + torch.arange(4, device=index.device)).reshape(-1)
    return index


class MaskedTeacher(nn.Module):
    """A teacher with channel masks; with all masks at 1 it computes exactly the teacher's function."""

    def __init__(self, teacher: EVC, encoder_to: str | None, decoder_to: str | None) -> None:
        super().__init__()
        self.teacher = teacher
        self.encoder_to, self.decoder_to = encoder_to, decoder_to
        self.groups = transform_groups(teacher, encoder_to, decoder_to)
        self.masks = nn.ParameterDict(
            {g.name.replace(".", "_"): nn.Parameter(torch.ones(g.width)) for g in self.groups}
        )
        self._handles = []
        for group in self.groups:
            for module in group.hooked:
                self._handles.append(module.register_forward_hook(self._hook(group)))

    def mask(self, group: MaskGroup) -> torch.Tensor:
        """The mask as applied: never negative."""
        return torch.relu(self.masks[group.name.replace(".", "_")])

    def _hook(self, group: MaskGroup):
        def apply(_module, _inputs, output: torch.Tensor) -> torch.Tensor:
            return output * self.mask(group).to(output.dtype).view(1, -1, 1, 1)

        return apply

    def forward(self, x: torch.Tensor, anchor: torch.Tensor):
        return self.teacher(x, anchor)

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def named_groups(self) -> Iterator[tuple[MaskGroup, torch.Tensor]]:
        for group in self.groups:
            yield group, self.mask(group)


@torch.no_grad()
def channel_importance(group: MaskGroup) -> torch.Tensor:
    """[our design] How much each channel of a group matters in the teacher: the norm of the weights
    that write it times the norm of the weights that read it (a channel carries information only if
    it is both written and read strongly)."""
    written = torch.zeros(group.width)
    for producer in group.producers:
        w = producer.conv.weight.detach().float().cpu()
        per_out = w.pow(2).sum(dim=(1, 2, 3))
        if producer.layout == "subpel":
            per_out = per_out.view(group.width, 4).sum(dim=1)
        written += per_out
    read = torch.zeros(group.width)
    for consumer in group.consumers:
        w = consumer.conv.weight.detach().float().cpu()
        read += w.pow(2).sum(dim=(0, 2, 3))
    return written.sqrt() * read.sqrt()


@torch.no_grad()
def select_channels(masked: MaskedTeacher) -> dict[str, torch.Tensor]:
    """For every group, the sorted indices of the ``keep`` channels with the highest importance."""
    return {
        g.name: torch.sort(torch.topk(channel_importance(g), g.keep).indices).values for g in masked.groups
    }


def removed_channels(group: MaskGroup, kept: torch.Tensor) -> torch.Tensor:
    """Boolean (width,): true for the group's channels that are not in ``kept``."""
    removed = torch.ones(group.width, dtype=torch.bool)
    removed[kept.cpu()] = False
    return removed


def removed_masks(masked: MaskedTeacher, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The raw mask parameters of the channels to remove (what the sparsity loss drives to zero)."""
    out = {}
    for group in masked.groups:
        mask = masked.masks[group.name.replace(".", "_")]
        out[group.name] = mask[removed_channels(group, kept[group.name]).to(mask.device)]
    return out


def _copy_conv(
    dst: nn.Conv2d,
    src: nn.Conv2d,
    out_index: torch.Tensor | None,
    out_scale: torch.Tensor | None,
    in_index: torch.Tensor | None,
) -> None:
    weight, bias = src.weight.detach(), None if src.bias is None else src.bias.detach()
    if out_index is not None:
        weight = weight[out_index]
        bias = None if bias is None else bias[out_index]
    if in_index is not None:
        weight = weight[:, in_index]
    if out_scale is not None:
        weight = weight * out_scale.view(-1, 1, 1, 1)
        bias = None if bias is None else bias * out_scale
    if weight.shape != dst.weight.shape:
        raise ValueError(f"merged weight {tuple(weight.shape)} does not fit the student's {tuple(dst.weight.shape)}")
    dst.weight.copy_(weight)
    if bias is not None:
        dst.bias.copy_(bias)


@torch.no_grad()
def merge(masked: MaskedTeacher, kept: dict[str, torch.Tensor], student_name: str) -> EVC:
    """Fold every mask into its convolutions and delete the channels not in ``kept``.

    Returns a plain model of ``student_name``'s registry structure. It equals the masked teacher
    exactly when the removed channels' masks are zero (otherwise their contribution is dropped).
    """
    teacher = masked.teacher
    spec = get_spec(student_name)
    if (spec.encoder, spec.decoder) != (masked.encoder_to or teacher.g_a.size, masked.decoder_to or teacher.g_s.size):
        raise ValueError(f"{spec.name} does not have the widths these masks shrink to")
    student = create_model(spec.name).to(next(teacher.parameters()).device)
    # Start from the teacher's tensors wherever the shapes agree (entropy model, rate, latent convs).
    student_state = student.state_dict()
    for name, tensor in teacher.state_dict().items():
        if name in student_state and student_state[name].shape == tensor.shape:
            student_state[name].copy_(tensor)

    # Each conv of the transforms gets its output selection/scale and input selection from the groups.
    out_plan: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    in_plan: dict[int, torch.Tensor] = {}
    device = next(student.parameters()).device
    for group in masked.groups:
        index = kept[group.name].to(device)
        scale = masked.mask(group).detach()[index]
        for producer in group.producers:
            conv_index = _out_channels(index, producer.layout)
            conv_scale = None
            if producer.scaled:
                conv_scale = scale.repeat_interleave(4) if producer.layout == "subpel" else scale
            out_plan[id(producer.conv)] = (conv_index, conv_scale)
        for consumer in group.consumers:
            in_plan[id(consumer.conv)] = index

    teacher_convs = dict(teacher.named_modules())
    student_convs = dict(student.named_modules())
    for name, src in teacher_convs.items():
        if not isinstance(src, nn.Conv2d) or not (name.startswith("g_a.") or name.startswith("g_s.")):
            continue
        dst = student_convs[name]
        out_index, out_scale = out_plan.get(id(src), (None, None))
        in_index = in_plan.get(id(src))
        if src.groups > 1:  # depthwise: its input channels are its output channels
            in_index = None
        _copy_conv(dst, src, out_index, out_scale, in_index)
    return student


__all__ = [
    "MaskGroup",
    "MaskedTeacher",
    "channel_importance",
    "merge",
    "removed_channels",
    "removed_masks",
    "select_channels",
    "transform_groups",
]
