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

Only g_a and g_s shrink: the latent (192 channels) and the entropy model keep their size. The groups are
found by walking the blocks' own descriptions (:func:`evc.nn.blocks.describe`), the wiring forward runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from evc.models.evc import EVC
from evc.models.registry import create_model, get_spec
from evc.nn.blocks import ConvFFN, DepthConv, ResidualBlockDown, ResidualBlockUp, describe

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


# Group names by the block whose chain holds the channels between two of its modules. They key the
# masks in distillation checkpoints, so they must stay stable.
_GROUP_KINDS: dict[type, str] = {
    nn.Sequential: "stream",  # a transform's residual stream, between its layers
    ResidualBlockDown: "rb_hidden",
    ResidualBlockUp: "rb_hidden",
    DepthConv: "dw",
    ConvFFN: "hidden",
}
# Per-channel, positively homogeneous maps: a non-negative mask commutes with them.
_POINTWISE = (nn.LeakyReLU, nn.ReLU, nn.Identity)


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


def _passes_through(module: nn.Module) -> bool:
    """Whether one of the module's branches hands its input on unchanged but for pointwise maps."""
    branches = describe(module)
    return branches is not None and any(
        all(isinstance(child, _POINTWISE) or _passes_through(child) for _, child in chain) for chain in branches
    )


class _ChannelWalk:
    """Walks a transform's block descriptions in forward order and sorts its convs into channel spaces.

    A space is a set of channels that must be pruned together: a conv's output starts one; a residual
    sum, an identity branch, a depthwise conv and pointwise maps keep it; a PixelShuffle(r) makes a new
    one of 1/r^2 the channels, whose producers are the shuffled conv's ("subpel"). The mask of a space
    is applied once after each module that writes it, before any conv reads it: after the whole block
    when no branch of the block passes its input through (a residual block), else inside its branches.
    """

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.width: list[int | None] = []
        self.owner: list[tuple[int, nn.Module] | None] = []  # outermost chain holding it between modules
        self.alias: dict[int, tuple[int, int]] = {}  # pre-shuffle space -> (space, r^2)
        self.producers: list[tuple[int, Producer]] = []  # in walk order
        self.consumers: list[tuple[int, Consumer, int]] = []  # (space read, consumer, space written)
        self.hooks: list[tuple[int, nn.Module]] = []

    def new_space(self, width: int | None) -> int:
        self.parent.append(len(self.parent))
        self.width.append(width)
        self.owner.append(None)
        return len(self.parent) - 1

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            space = self.parent[space]
        return space

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        first, second = min(a, b), max(a, b)  # the root stays the earliest created
        if None not in (self.width[first], self.width[second]) and self.width[first] != self.width[second]:
            raise ValueError(f"a residual sum adds {self.width[first]} to {self.width[second]} channels")
        self.parent[second] = first
        self.width[first] = self.width[first] or self.width[second]
        owners = [o for o in (self.owner[first], self.owner[second]) if o is not None]
        self.owner[first] = min(owners, key=lambda o: o[0]) if owners else None
        return first

    def module(self, module: nn.Module, space: int, depth: int, hooked_outside: bool) -> tuple[int, list[int]]:
        """Walk ``module`` reading ``space``; returns the space it writes and the producer records
        (indices into ``producers``) that wrote it directly."""
        branches = describe(module)
        if branches is not None:
            out = None
            written: list[int] = []
            for chain in branches:
                end, records = self.chain(module, chain, space, depth + 1, hooked_outside)
                out = end if out is None else self.union(out, end)
                written += records
            assert out is not None
            return out, written
        if isinstance(module, nn.Conv2d):
            if _is_depthwise(module):
                self.producers.append((space, Producer(module, "depthwise")))
                return space, [len(self.producers) - 1]
            out = self.new_space(module.out_channels)
            self.consumers.append((space, Consumer(module), out))
            self.producers.append((out, Producer(module)))
            return out, [len(self.producers) - 1]
        if isinstance(module, nn.PixelShuffle):
            factor = module.upscale_factor**2
            width = self.width[self.find(space)]
            out = self.new_space(None if width is None else width // factor)
            self.alias[self.find(space)] = (out, factor)
            return out, []
        if isinstance(module, _POINTWISE):
            return space, []
        raise ValueError(f"mask decay cannot follow {type(module).__name__}")

    def chain(
        self, owner: nn.Module, chain: list[tuple[str, nn.Module]], space: int, depth: int, hooked_outside: bool
    ) -> tuple[int, list[int]]:
        pending: nn.Module | None = None  # wrote the current tensor; its mask is still to be applied
        written: list[int] = []  # the producer records of the current tensor
        produced = False  # whether the current tensor was made inside this chain
        last = max((i for i, (_, child) in enumerate(chain) if not isinstance(child, _POINTWISE)), default=-1)
        for index, (_, child) in enumerate(chain):
            if isinstance(child, _POINTWISE):
                continue
            shuffle = isinstance(child, nn.PixelShuffle)
            if produced and not shuffle:
                self._own(space, depth, owner)
            if _is_depthwise(child):
                # The mask moves behind the depthwise conv; the writers before it stay unscaled.
                for record in written:
                    self.producers[record][1].scaled = False
            elif not shuffle:
                if pending is not None:
                    self.hooks.append((space, pending))
                pending, written = None, []
            whole = describe(child) is not None and not _passes_through(child)
            # A block that passes its input on is hooked inside, unless what it writes is hooked outside.
            out, records = self.module(child, space, depth, whole or (hooked_outside and index == last))
            if shuffle:
                pending = None if pending is None else child  # the mask fits the shuffled tensor
            elif describe(child) is None or whole:
                pending = child
            written = written + records if shuffle or self.find(out) == self.find(space) else records
            space, produced = out, True
        if pending is not None and not hooked_outside:
            self.hooks.append((space, pending))
        return space, written

    def _own(self, space: int, depth: int, owner: nn.Module) -> None:
        root = self.find(space)
        if self.owner[root] is None or depth < self.owner[root][0]:  # type: ignore[index]
            self.owner[root] = (depth, owner)


def _walk_groups(transform: nn.Module, prefix: str) -> list[MaskGroup]:
    """The mask groups of a transform, named ``{prefix}.{stage}.{kind}``, with keep = width.

    Stages are the residual streams between the transform's layers, in forward order, except its input
    and output (the image and the latent keep their channels); every other space belongs to the stream
    its readers write into, and groups come in the order their channels are first written.
    """
    walk = _ChannelWalk()
    source = walk.new_space(None)
    sink, _ = walk.module(transform, source, 0, hooked_outside=True)

    def resolve(space: int) -> tuple[int, int]:
        root = walk.find(space)
        if root in walk.alias:
            target, factor = walk.alias[root]
            return walk.find(target), factor
        return root, 1

    def target_of(root: int, seen: frozenset = frozenset()) -> int:
        """The stream (root) this space's channels serve."""
        if walk.owner[root] is None or _kind(walk.owner[root][1]) == "stream" or root in seen:
            return root
        written = [resolve(out)[0] for read, _, out in walk.consumers if resolve(read)[0] == root]
        if not written:
            raise ValueError(f"channels written in {type(walk.owner[root][1]).__name__} are never read")
        return target_of(written[0], seen | {root})

    interface = {resolve(source)[0], resolve(sink)[0]}
    roots = sorted({resolve(s)[0] for s in range(len(walk.parent))} - interface)
    stages: dict[int, int] = {}
    groups: dict[int, MaskGroup] = {}
    for root in roots:
        if walk.owner[root] is None:
            continue  # a pre-shuffle alias or a space no conv reads
        stream = target_of(root)
        if stream in interface:
            continue
        stage = stages.setdefault(stream, len(stages))
        width = walk.width[root]
        assert width is not None
        groups[root] = MaskGroup(f"{prefix}.{stage}.{_kind(walk.owner[root][1])}", width, width)
    for space, producer in walk.producers:
        root, factor = resolve(space)
        if root in groups:
            if factor > 1:
                producer.layout, producer.subpel = "subpel", factor
            groups[root].producers.append(producer)
    for space, consumer, _ in walk.consumers:
        root, factor = resolve(space)
        if root in groups:
            if factor > 1:
                raise ValueError("a conv reads channels before their PixelShuffle")
            groups[root].consumers.append(consumer)
    for space, module in walk.hooks:
        root, _ = resolve(space)
        if root in groups:
            groups[root].hooked.append(module)
    return list(groups.values())


def _kind(owner: nn.Module) -> str:
    try:
        return _GROUP_KINDS[type(owner)]
    except KeyError:
        raise ValueError(f"mask decay has no group name for channels inside {type(owner).__name__}") from None


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

    ``None`` leaves that transform out. The groups are found by walking the blocks' descriptions
    (:func:`evc.nn.blocks.describe`); the student's widths by walking the transform of the target size.
    Raises ValueError for a transform the walk cannot follow.
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
            per_out = per_out.view(group.width, producer.subpel).sum(dim=1)
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
    "transform_groups",
]
