"""Drawing helpers shared by `fkd eda`, `fkd report` and `fkd face`: faces with keypoints, grids, saving.

Matplotlib's object API only (`matplotlib.figure.Figure`, Agg canvas): no pyplot state, no display,
safe in scripts, tests and the Kaggle kernel. Figures are saved atomically (`fkd.atomic`).

Colours: the subject's left (image right) is blue, the subject's right (image left) orange, points on
the midline (nose tip, lip centres) green. Truth vs prediction: truth hollow green circles, prediction
red crosses, a yellow line joining each pair.
"""
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fkd.core.atomic import atomic_path
from fkd.core.keypoints import SIDES, as_points

LEFT_COLOR = "tab:blue"
RIGHT_COLOR = "tab:orange"
CENTRE_COLOR = "tab:green"
TRUTH_COLOR = "lime"
PRED_COLOR = "red"


SIDE_COLORS = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "centre": CENTRE_COLOR}
POINT_COLORS = [SIDE_COLORS[s] for s in SIDES]


def matplotlib_cmap(name: str, bad: str = "lightgrey"):
    """A copy of a named colormap whose NaN cells show as `bad`."""
    return matplotlib.colormaps[name].with_extremes(bad=bad)


def matplotlib_colors(name: str, n: int):
    """n colours from a named (qualitative) colormap."""
    cmap = matplotlib.colormaps[name]
    return [cmap(i % cmap.N) for i in range(n)]


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path, dpi: int = 100) -> Path:
    """Write `fig` as a PNG at `path` atomically (temp file + rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def show_image(ax, image, title=None, fontsize=8):
    """A grayscale face (uint8, 0..255) on `ax`, no ticks; pixel centres at integer coordinates."""
    ax.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def draw_sides(ax, keypoints, size=18, marker="o", edge=True):
    """Scatter the 15 points of one face (30 values, NaN = missing) coloured by the subject's side."""
    points = as_points(np.asarray(keypoints, dtype=np.float32))
    present = ~np.isnan(points).any(axis=1)
    colors = np.array(POINT_COLORS, dtype=object)
    ax.scatter(points[present, 0], points[present, 1], s=size, c=list(colors[present]), marker=marker,
               edgecolors="white" if edge else "none", linewidths=0.5 if edge else 0, zorder=3)


def side_legend_handles(marker="o"):
    return [Line2D([], [], marker=marker, linestyle="", color=SIDE_COLORS[s], markeredgecolor="white",
                   label=label)
            for s, label in (("left", "subject's left (image right)"),
                             ("right", "subject's right (image left)"),
                             ("centre", "midline"))]


def draw_truth_prediction(ax, truth=None, prediction=None, size=22):
    """Truth (hollow green circles) and prediction (red crosses), joined by a line where both exist."""
    t = as_points(np.asarray(truth, dtype=np.float32)) if truth is not None else None
    p = as_points(np.asarray(prediction, dtype=np.float32)) if prediction is not None else None
    if t is not None and p is not None:
        both = ~(np.isnan(t).any(axis=1) | np.isnan(p).any(axis=1))
        for (x0, y0), (x1, y1) in zip(t[both], p[both]):
            ax.plot([x0, x1], [y0, y1], color="yellow", linewidth=0.8, zorder=2)
    if t is not None:
        ok = ~np.isnan(t).any(axis=1)
        ax.scatter(t[ok, 0], t[ok, 1], s=size, facecolors="none", edgecolors=TRUTH_COLOR,
                   linewidths=1.0, zorder=3)
    if p is not None:
        ok = ~np.isnan(p).any(axis=1)
        ax.scatter(p[ok, 0], p[ok, 1], s=size, c=PRED_COLOR, marker="x", linewidths=1.0, zorder=4)


def truth_prediction_handles():
    return [Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=TRUTH_COLOR,
                   color=TRUTH_COLOR, label="truth"),
            Line2D([], [], marker="x", linestyle="", color=PRED_COLOR, label="prediction")]


def grid_shape(n: int, ncols: int = None):
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    ncols = max(1, min(ncols, n))
    return int(np.ceil(n / ncols)), ncols


def face_grid(images, keypoints=None, predictions=None, titles=None, ncols=None, suptitle=None,
              legend="sides", cell=1.9) -> Figure:
    """A grid of faces. With `keypoints` only: points coloured by side. With `predictions` too (or
    only): truth vs prediction. `titles` one short string per face."""
    images = np.asarray(images)
    n = len(images)
    nrows, ncols = grid_shape(max(n, 1), ncols)
    extra = 0.5 if (suptitle or legend) else 0.0
    fig = new_figure(cell * ncols, cell * nrows + extra)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        show_image(ax, images[i], titles[i] if titles is not None else None)
        if predictions is not None:
            draw_truth_prediction(ax, None if keypoints is None else keypoints[i], predictions[i])
        elif keypoints is not None:
            draw_sides(ax, keypoints[i])
        ax.set_xlim(-0.5, images[i].shape[1] - 0.5)
        ax.set_ylim(images[i].shape[0] - 0.5, -0.5)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    if legend == "sides" and keypoints is not None and predictions is None:
        fig.legend(handles=side_legend_handles(), loc="outside lower center", ncols=3, fontsize=8)
    elif legend and predictions is not None:
        handles = truth_prediction_handles() if keypoints is not None else truth_prediction_handles()[1:]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    return fig


def empty_figure(message: str, width=6, height=2) -> Figure:
    """A figure that says why there is nothing to show (rather than a missing file)."""
    fig = new_figure(width, height)
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    return fig


__all__ = ["SIDE_COLORS", "POINT_COLORS", "new_figure", "save_figure", "show_image",
           "draw_sides", "side_legend_handles", "draw_truth_prediction", "truth_prediction_handles",
           "face_grid", "grid_shape", "empty_figure", "matplotlib_cmap", "matplotlib_colors", "Line2D"]
