"""Metric curves of several runs in one PNG, fit to paste into a report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


# Curves with fewer points (validations every few hundred steps) are not smoothed: an average
# over 3-5 measurements would draw a trend that none of them shows.
_MIN_SMOOTHED = 10


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average (``weight`` in [0, 1)).

    ``s_t = w * s_{t-1} + (1 - w) * x_t`` from ``s_0 = 0``, divided by ``1 - w^t`` so the first
    points are not pulled towards zero.
    """
    out, last = [], 0.0
    for t, value in enumerate(values, start=1):
        last = weight * last + (1.0 - weight) * value
        out.append(last / (1.0 - weight**t) if weight > 0 else value)
    return out


def plot_metric(metric: str, curves: Mapping[str, Sequence[tuple[int, float]]], out: Path,
                smooth: float = 0.0) -> Path:
    """Write ``<out>/<metric with / as _>.png``: one line per run.

    Args:
        metric: logged key (``val/exact_match``), the title and y label.
        curves: legend label -> ``[(step, value), ...]``.
        out: folder.
        smooth: EMA weight; with smoothing the raw curve stays as a faint line beneath.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=150)
    colours = plt.get_cmap("tab10").colors
    smoothed = False
    for i, (name, points) in enumerate(sorted(curves.items())):
        if not points:
            continue
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        colour = colours[i % len(colours)]
        if smooth > 0 and len(points) >= _MIN_SMOOTHED:
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=1)
            ax.plot(steps, ema(values, smooth), color=colour, linewidth=1.8, label=name)
            smoothed = True
        else:  # a few validation points: drawn as measured, with markers
            marker = "o" if len(points) <= 30 else None
            ax.plot(steps, values, color=colour, linewidth=1.8, marker=marker, markersize=3,
                    label=name)
    title = metric + (f"  (EMA smoothing {smooth:g})" if smoothed else "")
    ax.set_title(title)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best", frameon=False)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{metric.replace('/', '_')}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
