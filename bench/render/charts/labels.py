"""Where the labels of a scatter panel go, in pixels: pure geometry, no plotly.

A label names one point, or several whose markers coincide (one label listing them). :func:`place_labels`
tries, for each label, the places around its point (:func:`_offsets`) and keeps the one that overlaps
least with the labels already placed, every marker and the panel's edge, with leader lines that cross no
label and no other line; plotly would draw text wherever it is told, collisions included. The geometry
assumes the default sans-serif font at :data:`_LABEL_FONT` px (:data:`_CHAR_WIDTH`), and keeps
:data:`_LABEL_MARGIN` px clear for a browser whose fonts are not the nominal ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

_LABEL_FONT = 11
#: Mean advance of a character of the default sans-serif font, as a fraction of its size.
_CHAR_WIDTH = 0.58
_LINE_HEIGHT = 1.25
MARKER = 10  # marker diameter, px
#: Label lines wrap after this many characters, so a cluster of coincident points gets a compact label.
_LABEL_LINE = 24
_LABEL_PAD = 1  # px of label background around the text
#: px kept clear round a label, for the browser's fonts not being the nominal ones: at 2, two MobileNet labels
#: of the 0.3.0 baseline pair's comparison page touched in Chromium.
_LABEL_MARGIN = 4
_LABEL_ROWS = 5  # rows of places above and below a point
_PLACEMENT_PASSES = 3
#: Cost of a leader line crossing a label or another leader line, in px² of overlap: about a line of
#: label text hidden.
_CROSSING_COST = 300.0
#: Points closer than this (px) compete for room, so the most crowded are labelled first.
_CROWD = 60
#: Cost of a pixel of gap between a label and its point, in px² of overlap: enough that a free
#: place beside the point beats a free place further out, far too little to accept a collision.
_DISTANCE_COST = 2.0


@dataclass(frozen=True)
class Frame:
    """A panel's axis ranges (x in log10) and its nominal size in pixels, to place labels in pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: float
    height: float

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Pixels from the panel's bottom-left corner (y up) of a point in display units."""
        return ((math.log10(x) - self.x0) / (self.x1 - self.x0) * self.width,
                (y - self.y0) / (self.y1 - self.y0) * self.height)


Box: TypeAlias = tuple[float, float, float, float]  # left, bottom, right, top (px)


@dataclass(frozen=True)
class Label:
    """A label for one or more coinciding points: its text, the point it names (display units), and
    where its centre sits relative to that point, in pixels (y up)."""

    text: str
    x: float
    y: float
    dx: float
    dy: float


def label_size(text: str) -> tuple[float, float]:
    lines = text.split("<br>")
    return (max(len(line) for line in lines) * _LABEL_FONT * _CHAR_WIDTH + 2 * _LABEL_PAD,
            len(lines) * _LABEL_FONT * _LINE_HEIGHT + 2 * _LABEL_PAD)


def _offsets(w: float, h: float) -> list[tuple[float, float]]:
    """Where a w × h label's centre may sit relative to its point, nearest first: beside the marker
    (right, then left), then in rows above and below it, each row centred on the point or starting or
    ending at it; the further rows take a leader line."""
    r = MARKER / 2 + 2
    beside = [(r + w / 2, 0.0), (-r - w / 2, 0.0)]
    rows = [(dx, sy * (r + h / 2 + k * h)) for k in range(_LABEL_ROWS) for sy in (1, -1)
            for dx in (0.0, w / 2 - r, r - w / 2, r + w / 2, -r - w / 2)]
    return beside + rows


Segment: TypeAlias = tuple[float, float, float, float]  # x0, y0, x1, y1 (px)


def _leader(px: float, py: float, box: Box) -> Segment | None:
    """The leader line from a point to the nearest point of its label's box; ``None`` when the label
    touches its marker (plotly's line then hides under the label)."""
    nx, ny = min(max(px, box[0]), box[2]), min(max(py, box[1]), box[3])
    return None if math.dist((px, py), (nx, ny)) <= MARKER else (px, py, nx, ny)


def _crosses(a: Segment, b: Segment) -> bool:
    """Whether two segments cross (touching at an end does not count)."""
    def side(x0: float, y0: float, x1: float, y1: float, x: float, y: float) -> float:
        return (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)

    d1, d2 = side(*a, b[0], b[1]), side(*a, b[2], b[3])
    d3, d4 = side(*b, a[0], a[1]), side(*b, a[2], a[3])
    return d1 * d2 < 0 and d3 * d4 < 0


def _through(segment: Segment, box: Box) -> bool:
    """Whether a segment passes through a box (Liang–Barsky clipping)."""
    x0, y0, x1, y1 = segment
    t0, t1 = 0.0, 1.0
    for p, q in ((x0 - x1, x0 - box[0]), (x1 - x0, box[2] - x0), (y0 - y1, y0 - box[1]), (y1 - y0, box[3] - y0)):
        if p == 0:
            if q < 0:
                return False
        elif p < 0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
    return t0 < t1


def overlap(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _outside(box: Box, frame: Frame) -> float:
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - overlap(box, (0.0, 0.0, frame.width, frame.height))


def _wrap(names: Sequence[str]) -> str:
    lines: list[str] = []
    for name in names:
        if lines and len(lines[-1]) + 2 + len(name) <= _LABEL_LINE:
            lines[-1] += f", {name}"
        else:
            lines.append(name)
    return "<br>".join(lines)


def place_labels(
    points: Sequence[tuple[float, float, str]], frame: Frame, obstacles: Sequence[tuple[float, float]] = ()
) -> list[Label]:
    """Labels for points (x, y in display units, name), placed so that they do not collide.

    Points whose markers overlap share one label listing their names. Each label, most crowded first,
    takes the place around its point (:func:`_offsets`) that overlaps least with the labels placed so
    far, every marker (``obstacles`` are further markers, e.g. a faint base run) and the panel's edge,
    with a small premium on staying close; plotly would draw text wherever it is told, collisions
    included."""
    pixels = [frame.px(x, y) for x, y, _ in points]
    cluster = list(range(len(points)))

    def root(i: int) -> int:
        while cluster[i] != i:
            i = cluster[i]
        return i

    for i in range(len(points)):
        for j in range(i):
            if math.dist(pixels[i], pixels[j]) < MARKER:
                cluster[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in sorted(range(len(points)), key=lambda i: (pixels[i], points[i][2])):
        members.setdefault(root(i), []).append(i)
    r = MARKER / 2
    markers = [(px - r, py - r, px + r, py + r) for px, py in [*pixels, *(frame.px(x, y) for x, y in obstacles)]]

    def crowd(group: list[int]) -> int:
        return sum(math.dist(pixels[group[0]], q) < _CROWD for q in pixels)

    groups = sorted(members.values(), key=lambda g: (-crowd(g), pixels[g[0]]))
    texts = [_wrap([points[i][2] for i in group]) for group in groups]
    boxes: list[Box | None] = [None] * len(groups)
    offsets: list[tuple[float, float]] = [(0.0, 0.0)] * len(groups)
    # greedy, most crowded first; then each label again, against all the others, once they all stand
    for _ in range(_PLACEMENT_PASSES):
        for n, group in enumerate(groups):
            w, h = label_size(texts[n])
            px, py = pixels[group[0]]
            others = [b for m, b in enumerate(boxes) if b is not None and m != n]
            lines = [seg for m, b in enumerate(boxes) if b is not None and m != n
                     and (seg := _leader(*pixels[groups[m][0]], b)) is not None]
            best: tuple[float, tuple[float, float], Box] | None = None
            for dx, dy in _offsets(w, h):
                box = (px + dx - w / 2, py + dy - h / 2, px + dx + w / 2, py + dy + h / 2)
                # a little room round each box: the browser's fonts and the window are not the nominal ones
                grown = (box[0] - _LABEL_MARGIN, box[1] - _LABEL_MARGIN, box[2] + _LABEL_MARGIN, box[3] + _LABEL_MARGIN)
                cost = sum(overlap(grown, b) for b in others) + sum(overlap(grown, m) for m in markers)
                gap = math.hypot(max(box[0] - px, 0.0, px - box[2]), max(box[1] - py, 0.0, py - box[3]))
                cost += 3 * _outside(box, frame) + _DISTANCE_COST * gap
                line = _leader(px, py, box)
                if line is not None:
                    # a leader line through a label or across another line sends the eye to the wrong point
                    cost += _CROSSING_COST * (sum(_through(line, b) for b in others) + sum(_crosses(line, seg) for seg in lines))
                cost += _CROSSING_COST * sum(_through(seg, box) for seg in lines)
                if best is None or cost < best[0]:
                    best = (cost, (dx, dy), box)
            assert best is not None
            offsets[n], boxes[n] = best[1], best[2]
    return [Label(texts[n], points[g[0]][0], points[g[0]][1], *offsets[n]) for n, g in enumerate(groups)]


def label_annotation(label: Label, xa: str, ya: str) -> dict[str, object]:
    """A label as a plotly annotation: text centred at its offset, a thin leader line to the point
    (hidden under the label when it touches its marker)."""
    return {
        "x": math.log10(label.x), "y": label.y, "xref": xa, "yref": ya, "text": label.text,
        "showarrow": True, "arrowhead": 0, "arrowwidth": 0.8, "arrowcolor": "#999", "standoff": MARKER / 2,
        "ax": label.dx, "ay": -label.dy,  # annotation offsets are pixels, y down
        "font": {"size": _LABEL_FONT, "color": "#222"}, "bgcolor": "rgba(255,255,255,0.75)",
        "borderpad": _LABEL_PAD, "align": "center", "name": "label",
    }
