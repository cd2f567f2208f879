"""Class colours with readable text, contrast ratios (WCAG 2), and the score gauge's geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass

from socialcredit.policy import Policy

# Used for classes a policy gives no colour: green at the top to red at the bottom.
_FALLBACK = ["#1a9850", "#66bd63", "#a6d96a", "#d9ef8b", "#fee08b", "#fdae61", "#f46d43", "#d73027"]
BLACK, WHITE = "#000000", "#ffffff"


def luminance(colour: str) -> float:
    """Relative luminance of a #rrggbb colour (WCAG 2)."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """Contrast ratio of two #rrggbb colours, from 1 to 21."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@dataclass(frozen=True)
class ClassStyle:
    """How a rating class is drawn: its name, score band, background and text colour."""

    name: str
    low: int
    high: int
    background: str
    text: str


def class_styles(policy: Policy) -> list[ClassStyle]:
    """One style per class, top to bottom; the text is black or white, whichever contrasts more."""
    styles = []
    high = policy.max
    for i, c in enumerate(policy.classes):
        low = policy.min if c.min is None else max(c.min, policy.min)
        background = c.colour or _FALLBACK[min(i * len(_FALLBACK) // len(policy.classes), len(_FALLBACK) - 1)]
        text = BLACK if contrast(background, BLACK) >= contrast(background, WHITE) else WHITE
        styles.append(ClassStyle(c.name, low, high, background.lower(), text))
        high = low
    return styles


def _point(fraction: float, radius: float) -> tuple[float, float]:
    # The gauge is a half circle from the left (lowest score) to the right (highest), centre (100, 100).
    angle = math.pi * (1 - fraction)
    return round(100 + radius * math.cos(angle), 2), round(100 - radius * math.sin(angle), 2)


def gauge(policy: Policy, score: int) -> dict:
    """SVG arcs of the class bands and the needle's end point for `score`."""
    span = max(policy.max - policy.min, 1)
    arcs = []
    for style in class_styles(policy):
        start = (style.low - policy.min) / span
        end = (style.high - policy.min) / span
        if end <= start:
            continue
        (x0, y0), (x1, y1) = _point(start, 80), _point(end, 80)
        arcs.append({"d": f"M {x0} {y0} A 80 80 0 0 1 {x1} {y1}", "colour": style.background,
                     "name": style.name})
    needle = _point(min(max((score - policy.min) / span, 0.0), 1.0), 66)
    return {"arcs": arcs, "needle": needle}
