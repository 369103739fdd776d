"""The report's plots, drawn with matplotlib (the optional extra ``gdvision[report]``) into PNG bytes.

matplotlib is imported here only, when a plot is drawn: the other commands never load it. Figures are made with
``matplotlib.figure.Figure`` and the Agg canvas directly (no pyplot, no global backend state, no window).

Example:
    >>> png = histogram("corner_error_px", [0.1, 0.2, 0.2, 3.0], marked=[3.0])
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from gdvision.errors import UsageError

BAD, GOOD, PLAIN = "#d62728", "#2ca02c", "#7f8c9b"


def _figure(width: float = 3.8, height: float = 2.2) -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("gdvision report draws its plots with matplotlib: pip install 'gdvision[report]'") from None
    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def histogram(name: str, values: Sequence[float], marked: Sequence[float] = (), note: str = "") -> bytes:
    """PNG of the distribution of ``values`` of metric ``name``; ``marked`` values (the worst items) as red ticks."""
    import numpy as np

    fig, ax = _figure()
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size:
        lo, hi = float(v.min()), float(v.max())
        bins = min(40, max(5, int(np.sqrt(v.size)) * 2)) if hi > lo else 1
        ax.hist(v, bins=bins, range=None if hi > lo else (lo - 0.5, lo + 0.5), color=PLAIN, edgecolor="white")
        for m in marked:
            ax.axvline(m, color=BAD, linewidth=1, alpha=0.7)
        ax.axvline(float(np.median(v)), color="black", linestyle="--", linewidth=1)
    ax.set_title(f"{name}{' (' + note + ')' if note else ''}", fontsize=9)
    ax.set_ylabel("items", fontsize=8)
    return _png(fig)


def change_bars(name: str, changes: Sequence[tuple[str, float, str]]) -> bytes:
    """PNG of each item's change of ``name`` (run - baseline), sorted; ``(id, change, kind)`` with kind
    ``regressed`` (red), ``improved`` (green) or anything else (grey)."""
    fig, ax = _figure(4.2, 2.5)
    ordered = sorted(changes, key=lambda c: c[1])
    colours = [BAD if k == "regressed" else GOOD if k == "improved" else PLAIN for _, _, k in ordered]
    ax.bar(range(len(ordered)), [c for _, c, _ in ordered], color=colours, width=1.0 if len(ordered) > 40 else 0.8)
    ax.axhline(0, color="black", linewidth=0.8)
    if len(ordered) <= 12:
        ax.set_xticks(range(len(ordered)), [i for i, _, _ in ordered], rotation=30, ha="right", fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(ordered)} items, sorted by change", fontsize=8)
    n_bad = sum(k == "regressed" for _, _, k in ordered)
    ax.set_title(f"{name}: run - baseline ({n_bad} regressed, red)", fontsize=9)
    return _png(fig)


def step_curve(title: str, xs: Sequence[float], ys: Sequence[float], xlabel: str, ylabel: str) -> bytes:
    """PNG of a step curve ``ys`` over ``xs`` (each value held until the next x), y from 0 to 1 (a fraction).

    Example:
        >>> step_curve("robustness", [0, 1, 2], [0.0, 0.5, 1.0], "budget", "broken")[:4] == b"\\x89PNG"
        True
    """
    fig, ax = _figure(5.0, 3.5)
    ax.step(list(xs), list(ys), where="post", color=PLAIN)
    ax.set(ylim=(0, 1.02))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    return _png(fig)


__all__ = ["change_bars", "histogram", "step_curve"]
