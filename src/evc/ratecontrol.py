"""Per-image rate control: the q index of the rate an encode asks for (:class:`evc.arguments.Rate`), and
the search for the one that meets a bits-per-pixel or PSNR target (:func:`coded_at`).

The search runs over every q index the format allows (1..65535, what ``--q-index`` takes), not only
between the trained rate anchors. Each probe is a real coded file, so the result is one that was
actually coded and meets the target: the best quality whose whole file is within a bpp target, or the
smallest file whose decoded PSNR reaches a PSNR target, settled by also coding its neighbour q index.

Probes are few because both measures are smooth in ln(q): ln(bpp) falls about 0.9 per unit of ln(q)
and PSNR about 4 dB (EVC-SS v3, kodim01 and kodim23, real files at q 8..300, 2026-12-07). The search
extrapolates along that slope from its first probe (then along its probes' own), interpolates between
the probes nearest the target once they lie on either side of it (the secant of the latest two, else
the chord), and steps 2, 4, 8, ... q indices past a prediction that keeps falling short, in integers.
A bpp target then codes 3-4 files on Kodak, a PSNR target 3-4 files and as many g_s runs
(``benchmarks/target_search.py``, whose output the README quotes).

Real files rather than the entropy model's estimated bits: the estimate runs the same entropy networks
as coding does, which are nearly all of a probe's cost (the ANS coder took 0.011-0.017 s of a 0.5-0.7 s
probe, and the estimating forward 0.5-0.9 s, on kodim23 with one thread of an AMD EPYC, 2026-12-07),
so it saves nothing on a CPU and would still need real files to settle the result. A PSNR probe also
runs the synthesis transform, which a bpp probe never does.

Two shapes of the curves are handled: the file size is smallest at some coarse q index (700-1000 on
kodim01 and kodim23, at 14-15 dB) and grows again beyond it (by 14-20 % at q index 65535), so coarser
q indices are never the smallest file for a target; and at q index 1 the model gives its best quality. A target no q index meets raises
``TargetUnreachable``; one that every q index meets gives the end of the range with a ``UserWarning``,
and so does a result outside the trained anchors, which the model was not trained for.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from evc.arguments import Rate
from evc.bitstream.container import Q_INDEX_MAX
from evc.errors import EVCError
from evc.models.rates import q_index_for_quality

Q_RANGE = (1, Q_INDEX_MAX)  # the q indices a file can hold, as --q-index takes them
# The prior slopes the first extrapolation uses (measured; the later steps use the probes' own).
BPP_SLOPE = -0.9  # d ln(bpp) / d ln(q)
PSNR_SLOPE = -4.0  # dB per unit of ln(q)
_MAX_STEP = math.log(16.0)  # one extrapolation moves q by at most this factor
# The golden-section search for the smallest file stops once its bracket spans under 10 % in q: the
# size is flat there (Kodak: within 2 % over q 700..1500).
_MINIMUM_RESOLUTION = math.log(1.1)
_INVERSE_PHI = (math.sqrt(5.0) - 1.0) / 2.0

Progress = Callable[[str], None]


class Coded(Protocol):
    """A coded file: its size in bits per pixel and its decoded PSNR (which may be computed on access)."""

    @property
    def bpp(self) -> float: ...

    @property
    def psnr(self) -> float: ...


C = TypeVar("C", bound=Coded)


class TargetUnreachable(EVCError):
    """No q index of the model meets the requested target for this image."""


class _Probes(Generic[C]):
    """The q indices one search has coded, each once, with the value the search compares."""

    def __init__(
        self,
        encode: Callable[[int], C],
        measure: Callable[[C], float],
        describe: Callable[[int, C], str],
        progress: Progress | None,
    ) -> None:
        self._encode, self._measure, self._describe, self._progress = encode, measure, describe, progress
        self.coded: dict[int, C] = {}
        self.values: dict[int, float] = {}

    def __call__(self, q: int) -> float:
        if q not in self.values:
            coded = self._encode(q)
            self.coded[q] = coded
            self.values[q] = self._measure(coded)
            if self._progress is not None:
                self._progress(self._describe(q, coded))
        return self.values[q]


def _aim(q: float, low: int, high: int, round_up: bool) -> int:
    """``q`` rounded towards the side the answer lies on, within [low, high]."""
    rounded = math.ceil(q - 1e-9) if round_up else math.floor(q + 1e-9)
    return min(max(rounded, low), high)


def _boundary(
    probe: _Probes, target: float, above: Callable[[float], bool], start: int, slope: float, answer_right: bool,
    stop_when_rising: bool,
) -> tuple[int | None, int | None]:
    """Probe until the q index where the value (falling with q) crosses ``target`` is pinned.

    ``above(v)``: v lies on the small-q side of the target. Returns (left, right): the largest probed q
    above the target and the smallest one not above it, adjacent; left is None when q index 1 is
    already below the target, right None when every q up to the last probed is above it (the end of
    the range, or, with ``stop_when_rising``, the value rose from one probe to the next: the file size
    past its minimum). ``answer_right``: the answer is ``right`` (rounding aims there), else ``left``.
    """
    low, high = Q_RANGE
    q = start
    while True:
        probe(q)
        values = probe.values
        right = min((p for p, v in values.items() if not above(v)), default=None)
        left = max((p for p, v in values.items() if above(v) and (right is None or p < right)), default=None)
        if left is not None and right is not None:
            if right - left == 1:
                return left, right
            q = _aim(math.exp(_interpolate(probe, left, right, target)), left + 1, right - 1, answer_right)
            # Predictions biased to one side creep up on the boundary one q index at a time: after three
            # probes in a row on one side, step past the prediction by 2, 4, 8, ... q indices (unless it
            # already is the q index next to that side's end, which settles the search either way).
            sides = [above(v) for v in values.values()]
            run = next((i for i, side in enumerate(reversed(sides)) if side != sides[-1]), len(sides))
            if run >= 3 and q != (left + 1 if sides[-1] else right - 1):
                step = 2 ** (run - 2)
                q = max(q, min(left + step, right - 1)) if sides[-1] else min(q, max(right - step, left + 1))
        elif right is None:  # every probe is above the target: go to larger q
            assert left is not None
            if left == high:
                return left, None
            known = sorted(values)
            if stop_when_rising and len(known) > 1 and values[known[-1]] >= values[known[-2]]:
                return left, None
            q = _extrapolate(probe, known[-2:], left, target, slope, answer_right, left + 1, high)
            if stop_when_rising:  # steps of 10 % at least, so that a rise is not the files' noise
                q = max(q, min(high, math.ceil(left * 1.1)))
        else:  # every probe is below the target: go to smaller q
            if right == low:
                return None, right
            q = _extrapolate(probe, sorted(values)[:2], right, target, slope, answer_right, low, right - 1)


def _interpolate(probe: _Probes, left: int, right: int, target: float) -> float:
    """ln(q) where the value is predicted to cross ``target`` inside the bracket (left, right): the
    secant through the two latest probes (near the target, so the curve's bend matters little), else
    the chord across the bracket, else its middle."""
    x_left, x_right = math.log(left), math.log(right)
    latest = list(probe.values)[-2:]
    # The latest two only when 2 % apart or more: closer, the files' noise swamps their slope.
    pairs = [latest] if len(latest) == 2 and abs(math.log(latest[0] / latest[1])) >= 0.02 else []
    for a, b in (*pairs, (left, right)):
        g_a, g_b = probe.values[a] - target, probe.values[b] - target
        if math.isfinite(g_a) and math.isfinite(g_b) and g_a != g_b:
            x = math.log(a) + g_a * (math.log(b) - math.log(a)) / (g_a - g_b)
            if x_left <= x <= x_right:  # at an end: the q index next to it, once aimed
                return x
    return (x_left + x_right) / 2


def _extrapolate(
    probe: _Probes, nearest: list[int], from_q: int, target: float, prior: float, round_up: bool, low: int, high: int
) -> int:
    """The next q index in [low, high], stepping from ``from_q`` towards ``target`` along the slope of
    the probes ``nearest`` the target (two on the same side) when it is plausible (the prior's sign,
    at most 4 times as steep, at least 1/16 as steep), else along the prior's, by at least twice the
    last step then: a curve that does not fall as expected (random weights) is crossed in a few steps."""
    slope, least = prior, 0.0
    if len(nearest) == 2:
        a, b = nearest
        measured = (probe.values[b] - probe.values[a]) / (math.log(b) - math.log(a))
        if math.isfinite(measured) and min(prior * 4, prior / 16) <= measured <= max(prior * 4, prior / 16):
            slope = measured
        else:
            least = 2 * abs(math.log(b / a))
    step = (target - probe.values[from_q]) / slope  # +-inf: a PSNR of inf
    step = math.copysign(min(_MAX_STEP, max(abs(step), least)), 1.0 if high > from_q else -1.0)
    return _aim(math.exp(math.log(from_q) + step), low, high, round_up)


def _smallest_file(sizes: _Probes, within: tuple[int, int], enough: Callable[[float], bool] = lambda v: False) -> int:
    """The q index in ``within`` whose file is smallest: a golden-section search in ln(q), from the
    probes made so far, assuming one minimum. Stops early at a q where ``enough(value)``."""
    low, high = within
    probed = {q: v for q, v in sizes.values.items() if low <= q <= high}
    best = min(probed, key=probed.__getitem__, default=None)
    if best is not None:  # narrow the bracket to the probes on either side of the best one so far
        # (probes well apart from it: next to it the files' noise may hide the slope)
        low = max((q for q in probed if q <= best / 1.5), default=low)
        high = min((q for q in probed if q >= best * 1.5), default=high)
    x_low, x_high = math.log(low), math.log(high)

    def at(x: float) -> float:
        return sizes(min(max(round(math.exp(x)), low), high))

    x_c = x_high - _INVERSE_PHI * (x_high - x_low)
    x_d = x_low + _INVERSE_PHI * (x_high - x_low)
    while x_high - x_low > _MINIMUM_RESOLUTION and round(math.exp(x_high)) - round(math.exp(x_low)) > 2:
        v_c, v_d = at(x_c), at(x_d)
        if enough(v_c) or enough(v_d):
            break
        if v_c <= v_d:
            x_high, x_d = x_d, x_c
            x_c = x_high - _INVERSE_PHI * (x_high - x_low)
        else:
            x_low, x_c = x_c, x_d
            x_d = x_low + _INVERSE_PHI * (x_high - x_low)
    found = [q for q, v in sizes.values.items() if enough(v)]
    if found:
        return min(found)
    probed = {q: v for q, v in sizes.values.items() if within[0] <= q <= within[1]}
    return min(probed, key=lambda q: (probed[q], q))


def _range_note(q: int, q_best: int, q_worst: int) -> str:
    """Where ``q`` lies against the trained anchors, for a warning ("" inside them)."""
    anchors = f"the trained anchors span q indices {q_best}..{q_worst}, --q-index takes {Q_RANGE[0]}..{Q_RANGE[1]}"
    if q < q_best:
        return (f"q index {q} is past the highest-rate anchor ({anchors}): the model was not trained for "
                "these rates, where more bits buy little quality")
    if q > q_worst:
        return (f"q index {q} is below the lowest-rate anchor ({anchors}): the model was not trained for "
                "these rates")
    return ""


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


def coded_at(
    rate: Rate, encode: Callable[[int], C], anchor_q_scales: Sequence[float], model: str = "the model", *,
    start: int | None = None, progress: Progress | None = None,
) -> C:
    """The file coded at ``rate``: at the q index of its quality (log-uniform in q_scale between the
    anchors, :func:`evc.models.rates.q_index_for_quality`) or at its q index, coded once; for a target,
    the file a search over every q index 1..65535 finds:

    - ``target_bpp``: the best quality (smallest q index) whose real size is at most that many bits per
      pixel (only ``bpp`` of the coded files is read);
    - ``target_psnr``: the smallest file whose decoded PSNR reaches that many dB (the largest q index
      that reaches it, unless a smaller file lies at a smaller one: past the coarsest useful q index
      files grow again; ``psnr`` is read, and ``bpp`` where the file size is compared).

    ``encode(q)``: the file coded at q index q. ``anchor_q_scales``: the trained rate anchors' q_scale
    values, lowest rate first; ``model``: its name, for the warnings. ``start``: the first q index a
    search probes (default: the anchors' geometric mean); ``progress``: called with one line per probe.
    Warns (UserWarning) for a q index past the highest-rate anchor, which no quality reaches, for a
    target met outside the anchors, and when every q index meets a target (the end of the range is
    coded); raises TargetUnreachable, naming the smallest file or the best quality any q index gives,
    when no q index meets a target.
    """
    q_best, q_worst = q_index_for_quality(1.0, anchor_q_scales), q_index_for_quality(0.0, anchor_q_scales)
    if rate.target_bpp is not None:
        return _meet_target_bpp(encode, q_best, q_worst, rate.target_bpp, start, progress)
    if rate.target_psnr is not None:
        return _meet_target_psnr(encode, q_best, q_worst, rate.target_psnr, start, progress)
    if rate.quality is not None:
        return encode(q_index_for_quality(rate.quality, anchor_q_scales))
    assert rate.q_index is not None  # a Rate sets exactly one field
    if rate.q_index < q_best:
        # Finer steps than the model was trained for: past the anchor each extra bit buys a fraction
        # of the quality it buys below it, ever less (EVC-SS v1, measured in the README at --q-index).
        warnings.warn(
            f"q index {rate.q_index} is past {model}'s highest-rate anchor (q index {q_best}, quality 1): "
            "the model was not trained for these rates, where more bits buy little quality",
            UserWarning, stacklevel=4,
        )
    return encode(rate.q_index)


def _meet_target_bpp(
    encode: Callable[[int], C], q_best: int, q_worst: int, target_bpp: float, start: int | None, progress: Progress | None
) -> C:
    """:func:`coded_at` for a bpp target (``q_best`` / ``q_worst``: the q indices of the highest- and
    lowest-rate anchors, which the warnings name)."""
    goal = f"searching q for {target_bpp:g} bpp"
    sizes = _Probes(encode, lambda c: math.log(c.bpp), lambda q, c: f"{goal}: q index {q} → {c.bpp:.4f} bpp",
                    progress)
    target = math.log(target_bpp)
    start = round(math.sqrt(q_best * q_worst)) if start is None else start
    left, right = _boundary(sizes, target, lambda v: v > target, start, BPP_SLOPE, True, stop_when_rising=True)
    if right is None:  # every probe is over the target, the last ones past the smallest file
        smallest = _smallest_file(sizes, Q_RANGE, enough=lambda v: v <= target)
        if sizes.values[smallest] > target:
            sizes(Q_RANGE[0])  # the other end, for the message (this path only)
            raise TargetUnreachable(
                f"target of {target_bpp:g} bpp is below the smallest file any q index gives this image: q indices "
                f"{Q_RANGE[0]}..{Q_RANGE[1]} give {sizes.coded[smallest].bpp:.4f} bpp (q index {smallest}) to "
                f"{sizes.coded[Q_RANGE[0]].bpp:.4f} bpp (q index {Q_RANGE[0]}); coarser q indices than {smallest} "
                "give larger files again"
            )
        left, right = _boundary(sizes, target, lambda v: v > target, smallest, BPP_SLOPE, True, stop_when_rising=False)
        assert right is not None
    result = sizes.coded[right]
    if left is None:  # q index 1 fits: the target does not bite
        _warn(f"target of {target_bpp:g} bpp is above the largest file any q index gives this image: writing "
              f"q index {right}, the finest of {Q_RANGE[0]}..{Q_RANGE[1]} ({result.bpp:.4f} bpp); "
              + _range_note(right, q_best, q_worst))
    elif note := _range_note(right, q_best, q_worst):
        _warn(f"target of {target_bpp:g} bpp is met at q index {right} ({result.bpp:.4f} bpp), outside the "
              f"trained anchors: {note}")
    return result


def _meet_target_psnr(
    encode: Callable[[int], C], q_best: int, q_worst: int, target_psnr: float, start: int | None, progress: Progress | None
) -> C:
    """:func:`coded_at` for a PSNR target (arguments as :func:`_meet_target_bpp`)."""
    goal = f"searching q for {target_psnr:g} dB"
    quality = _Probes(encode, lambda c: c.psnr,
                      lambda q, c: f"{goal}: q index {q} → {c.psnr:.2f} dB, {c.bpp:.4f} bpp", progress)
    start = round(math.sqrt(q_best * q_worst)) if start is None else start
    left, right = _boundary(quality, target_psnr, lambda v: v >= target_psnr, start, PSNR_SLOPE, False,
                            stop_when_rising=False)
    if left is None:
        best = quality.coded[right]  # q index 1
        raise TargetUnreachable(
            f"target of {target_psnr:g} dB is above the best quality any q index gives this image: "
            f"{best.psnr:.2f} dB at q index {right}, the finest of {Q_RANGE[0]}..{Q_RANGE[1]} ({best.bpp:.4f} bpp)"
        )
    answer, result = left, quality.coded[left]
    # Past the smallest file, a coarser q index gives a larger file: look for it only where the probes
    # say the size no longer falls (never inside the trained anchors, where it falls steeply).
    if right is None or left > q_worst:
        sizes = _Probes(encode, lambda c: c.bpp, lambda q, c: f"{goal}: q index {q} → {c.bpp:.4f} bpp", progress)
        sizes.coded.update(quality.coded)
        sizes.values.update({q: c.bpp for q, c in quality.coded.items()})
        # (a probe well below ``left``: next to it the files' noise may hide the slope)
        nearby = [q for q in sizes.values if left / 2 <= q <= left / 1.2] or [max(Q_RANGE[0], math.floor(left / 1.25))]
        if any(sizes(q) <= sizes.values[left] for q in nearby):
            smallest = _smallest_file(sizes, (Q_RANGE[0], left))
            if smallest != left and sizes.coded[smallest].psnr >= target_psnr:
                answer, result = smallest, sizes.coded[smallest]
    note = _range_note(answer, q_best, q_worst)
    if right is None:
        _warn(f"target of {target_psnr:g} dB is below the quality of the smallest file any q index gives this "
              f"image: writing q index {answer} ({result.bpp:.4f} bpp, {result.psnr:.2f} dB; q indices "
              f"{Q_RANGE[0]}..{Q_RANGE[1]})" + (f"; {note}" if note else ""))
    elif note:
        _warn(f"target of {target_psnr:g} dB is met at q index {answer} ({result.psnr:.2f} dB), outside the "
              f"trained anchors: {note}")
    return result
