"""Mask decay, structure half: channel masks in a teacher's transforms, and their exact merge.

A mask is a per-channel scale (initialised to 1) placed right after a convolution, at the positions of
the paper's mask-decay figure: in a residual block after conv1 and on the block output; in a depth-conv
block after the depthwise conv, after its last 1x1, after the FFN expansion and after the FFN projection.
Everything that adds into one residual stream shares that stream's mask, so a channel of the stream is
zero everywhere once its mask is.

Masks are applied as relu(mask), so they are never negative. (Leaky)ReLU is positively homogeneous,
so a mask folds exactly into the weights and bias of the convolution(s) before it; a channel whose mask
is zero is then deleted, with the matching input slice of the layers that read it. Merging a masked
teacher whose removed masks are zero yields a plain model of the student's registry structure
(EVC-MM, EVC-SS, ...) that computes the same function.

Only g_a and g_s shrink: the latent (192 channels) and the entropy model keep their size. Each block
declares its masks beside its wiring (``mask_points`` next to ``branches``, see
:data:`evc.nn.blocks.MaskPoints`). A transform is walked as the stages its description
(:func:`evc.nn.blocks.describe`, the wiring forward runs) opens to: a stage masked at its output starts
a residual stream, one that passes its input on adds to it; each mask's writers and readers are the
convs around its point in that chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from evc.models.evc import EVC
from evc.models.registry import create_model, get_spec
from evc.nn.blocks import OUTPUT, POINTWISE, STREAM, describe

# How a convolution touches a group's channels: "plain" (channel c is conv channel c), "subpel"
# (channel c is conv channels c*r^2 .. c*r^2 + r^2 - 1 before a PixelShuffle(r)), "depthwise" (in and
# out both c).
Layout = str


@dataclass
class Producer:
    conv: nn.Conv2d
    layout: Layout = "plain"
    scaled: bool = True  # False: the mask sits after a later conv of the group (conv1 before a depthwise)
    subpel: int = 1  # conv output channels per group channel: r^2 before a PixelShuffle(r), else 1


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

    @property
    def key(self) -> str:
        """The name of the group's mask among the masked teacher's parameters (and in its checkpoints):
        its name with "_" for ".", which parameter names cannot hold."""
        return self.name.replace(".", "_")


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


def _chains(module: nn.Module) -> list[list[nn.Module]] | None:
    """The branches of ``module`` (:func:`evc.nn.blocks.describe`) as lists of modules; None for a leaf."""
    branches = describe(module)
    return None if branches is None else [[child for _, child in chain] for chain in branches]


def _acting(chain: list[nn.Module]) -> list[nn.Module]:
    """``chain`` less its pointwise maps, which a non-negative mask commutes with; [] is an identity."""
    return [module for module in chain if not isinstance(module, POINTWISE)]


def _writers(chain: list[nn.Module]) -> list[Producer]:
    """The convs whose output channels ``chain`` ends with, in forward order. Raises ValueError if none."""
    *before, last = _acting(chain) or [None]
    if isinstance(last, nn.PixelShuffle):
        factor = last.upscale_factor**2
        return [replace(p, layout="subpel", subpel=p.subpel * factor) for p in _writers(before)]
    if _is_depthwise(last):  # the mask moves behind it: the conv before it stays unscaled
        return [replace(p, scaled=False) for p in _writers(before)] + [Producer(last, "depthwise")]
    if isinstance(last, nn.Conv2d):
        return [Producer(last)]
    chains = None if last is None else _chains(last)
    if chains is None:
        raise ValueError(f"mask decay finds no conv that writes the output of {type(last).__name__}")
    return [p for branch in chains for p in _writers(branch)]


def _readers(chain: list[nn.Module]) -> list[Consumer]:
    """The convs that read the input of ``chain`` ([] for an identity). Raises ValueError where the
    channels go on into what mask decay cannot follow (a depthwise conv, a PixelShuffle, an identity
    branch of a block inside the chain)."""
    acting = _acting(chain)
    if not acting:
        return []
    first = acting[0]
    if isinstance(first, nn.Conv2d) and not _is_depthwise(first):
        return [Consumer(first)]
    chains = _chains(first)
    if chains is None or not all(_acting(branch) for branch in chains):
        raise ValueError(f"mask decay cannot follow masked channels into {type(first).__name__}")
    return [c for branch in chains for c in _readers(branch)]


def _stages(module: nn.Module) -> Iterator[nn.Module]:
    """The stages of a transform in forward order: it is opened down to plain convs and the blocks that
    declare mask points (:data:`evc.nn.blocks.MaskPoints`)."""
    chains = _chains(module)
    if chains is None or getattr(module, "mask_points", None) is not None:
        if not isinstance(module, POINTWISE):
            yield module
        return
    if len(chains) != 1:
        raise ValueError(f"{type(module).__name__} sums branches but declares no mask points")
    for child in chains[0]:
        yield from _stages(child)


def _stage_groups(stage: nn.Module, stream: MaskGroup) -> tuple[MaskGroup, list[MaskGroup]]:
    """Add what ``stage`` reads and writes of ``stream``; returns the stream it writes (``stream`` or a
    new one) and the groups it starts, in the order their channels are first written. Names are kinds
    and widths 0 until :func:`_walk_groups` numbers them. Raises ValueError where its mask points do not
    fit its wiring, or for a module mask decay cannot follow."""
    name, described = type(stage).__name__, describe(stage)
    if described is None and not isinstance(stage, nn.Conv2d):
        raise ValueError(f"mask decay cannot follow {name}")
    points = dict(stage.mask_points) if described else {STREAM: OUTPUT}  # type: ignore[arg-type]
    described = described or [[("conv", stage)]]  # a plain conv starts a new stream
    chains = [[child for _, child in chain] for chain in described]
    # (chain, place) of each submodule, which orders the groups; a new stream is first written at the
    # end of chain 0.
    where = {attr: (b, i) for b, chain in enumerate(described) for i, (attr, _) in enumerate(chain)}
    where[OUTPUT] = (0, len(chains[0]))
    if any(attr not in where for attr in points.values()):
        raise ValueError(f"{name} has no submodule (None) at one of its mask points {points}")
    stream.consumers += [c for chain in chains for c in _readers(chain)]
    passes = any(not _acting(chain) for chain in chains)
    if passes and points[STREAM] == OUTPUT:
        raise ValueError(f"{name} masks its stream at its output, but a branch passes its input on")
    if not passes and points[STREAM] != OUTPUT:
        raise ValueError(f"{name} masks its stream after {points[STREAM]!r}, but no branch passes its input on")
    new: list[tuple[tuple[int, int], MaskGroup]] = []
    for kind, attr in points.items():
        b, i = where[attr]
        if attr == OUTPUT:
            stream = MaskGroup(STREAM, 0, 0, [p for chain in chains for p in _writers(chain)], hooked=[stage])
            new.append(((b, i), stream))
            continue
        writers, readers = _writers(chains[b][: i + 1]), _readers(chains[b][i + 1 :])
        if kind == STREAM:  # the other branch passes the input on: the sum is masked where this one ends
            if readers or any(_acting(chain) for chain in chains[:b] + chains[b + 1 :]):
                raise ValueError(f"{name} writes its stream elsewhere than after {attr!r}, unmasked")
            stream.producers += writers
            stream.hooked.append(chains[b][i])
        elif not readers:
            raise ValueError(f"the channels {name} masks after {attr!r} are never read")
        else:
            new.append(((b, i), MaskGroup(kind, 0, 0, writers, readers, [chains[b][i]])))
    return stream, [group for _, group in sorted(new, key=lambda item: item[0])]


def _walk_groups(transform: nn.Module, prefix: str) -> list[MaskGroup]:
    """The mask groups of a transform, named ``{prefix}.{stream}.{kind}``, with keep = width.

    A stage whose STREAM point is OUTPUT starts a new residual stream; one that passes its input on adds
    to the current one. Streams are numbered in forward order, leaving out the transform's input and
    output (the image and the latent keep their channels); a stage's other groups take the number of the
    stream it writes, and are left out with it. Groups come in the order their channels are first
    written. Raises ValueError where the declarations do not fit the wiring (see :func:`_stage_groups`)
    or the convs of one group disagree on its width.
    """
    streams = [MaskGroup(STREAM, 0, 0)]  # the input
    found: list[tuple[MaskGroup, MaskGroup]] = []  # (group, the stream it serves), in forward order
    for stage in _stages(transform):
        stream, new = _stage_groups(stage, streams[-1])
        if stream is not streams[-1]:
            streams.append(stream)
        found += [(group, stream) for group in new]
    number = {id(s): n for n, s in enumerate(streams[1:-1])}
    groups = [group for group, serves in found if id(serves) in number]
    for group, serves in found:
        if id(serves) in number:
            group.name = f"{prefix}.{number[id(serves)]}.{group.name}"
            widths = {p.conv.out_channels // p.subpel for p in group.producers}
            widths |= {c.conv.in_channels for c in group.consumers}
            if len(widths) != 1:
                raise ValueError(f"the convs of {group.name} disagree on its width: {sorted(widths)}")
            group.width = group.keep = widths.pop()
    return groups


def _student_transform(transform: nn.Module, size: str) -> nn.Module:
    """The transform of the same class at ``size``, for its widths only (on the meta device, RNG untouched)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return type(transform)(size)


def _shrink_groups(transform: nn.Module, size: str, prefix: str) -> list[MaskGroup]:
    groups = _walk_groups(transform, prefix)
    student = {g.name: g.width for g in _walk_groups(_student_transform(transform, size), prefix)}
    if list(student) != [g.name for g in groups]:
        raise ValueError(f"{prefix} of size {size} does not have the structure of the teacher's")
    for group in groups:
        group.keep = student[group.name]
    return groups


def transform_groups(model: EVC, encoder_to: str | None, decoder_to: str | None) -> list[MaskGroup]:
    """Mask groups of ``model``'s g_a (shrinking to plan ``encoder_to``) and g_s (to ``decoder_to``).

    ``None`` leaves that transform out. The groups come from the blocks' mask points along their
    descriptions (:func:`evc.nn.blocks.describe`); the student's widths from the transform of the target
    size. Raises ValueError for a transform the walk cannot follow or whose declared mask points do not
    fit its wiring, and for a target size of another structure.
    """
    groups: list[MaskGroup] = []
    if encoder_to is not None:
        groups += _shrink_groups(model.g_a, encoder_to, "g_a")
    if decoder_to is not None:
        groups += _shrink_groups(model.g_s, decoder_to, "g_s")
    return groups


def _out_channels(index: torch.Tensor, layout: Layout, subpel: int) -> torch.Tensor:
    """Conv output channels of group channels ``index``."""
    if layout == "subpel":
        return (index.view(-1, 1) * subpel + torch.arange(subpel, device=index.device)).reshape(-1)
    return index


class MaskedTeacher(nn.Module):
    """A teacher with channel masks; with all masks at 1 it computes exactly the teacher's function."""

    def __init__(self, teacher: EVC, encoder_to: str | None, decoder_to: str | None) -> None:
        super().__init__()
        self.teacher = teacher
        self.encoder_to, self.decoder_to = encoder_to, decoder_to
        self.groups = transform_groups(teacher, encoder_to, decoder_to)
        self.masks = nn.ParameterDict(
            {g.key: nn.Parameter(torch.ones(g.width)) for g in self.groups}
        )
        self._handles = []
        for group in self.groups:
            for module in group.hooked:
                self._handles.append(module.register_forward_hook(self._hook(group)))

    def mask(self, group: MaskGroup) -> torch.Tensor:
        """The mask as applied: never negative."""
        return torch.relu(self.masks[group.key])

    def _hook(self, group: MaskGroup):
        def apply(_module, _inputs, output: torch.Tensor) -> torch.Tensor:
            return output * self.mask(group).to(output.dtype).view(1, -1, 1, 1)

        return apply

    def forward(self, x: torch.Tensor, anchor: torch.Tensor, entropy_autocast: bool = False):
        return self.teacher(x, anchor, entropy_autocast)

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
            per_out = per_out.view(group.width, producer.subpel).sum(dim=1)
        written += per_out
    read = torch.zeros(group.width)
    for consumer in group.consumers:
        w = consumer.conv.weight.detach().float().cpu()
        read += w.pow(2).sum(dim=(0, 2, 3))
    return written.sqrt() * read.sqrt()


def top_channels(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """The indices of the ``keep`` highest of a group's channel ``scores`` (width,), in ascending order
    (the order the merged student keeps them in). Raises RuntimeError if ``keep`` exceeds the width."""
    return torch.sort(torch.topk(scores, keep).indices).values


@torch.no_grad()
def select_channels(masked: MaskedTeacher) -> dict[str, torch.Tensor]:
    """For every group, the sorted indices of the ``keep`` channels with the highest importance."""
    return {g.name: top_channels(channel_importance(g), g.keep) for g in masked.groups}


def removed_channels(group: MaskGroup, kept: torch.Tensor) -> torch.Tensor:
    """Boolean (width,): true for the group's channels that are not in ``kept``."""
    removed = torch.ones(group.width, dtype=torch.bool)
    removed[kept.cpu()] = False
    return removed


def removed_masks(masked: MaskedTeacher, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The raw mask parameters of the channels to remove (what the sparsity loss drives to zero)."""
    out = {}
    for group in masked.groups:
        mask = masked.masks[group.key]
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
            conv_index = _out_channels(index, producer.layout, producer.subpel)
            conv_scale = None
            if producer.scaled:
                conv_scale = scale.repeat_interleave(producer.subpel) if producer.layout == "subpel" else scale
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
    "top_channels",
    "transform_groups",
]
