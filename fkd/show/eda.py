"""`fkd eda`: plots of a competition's training data -> reports/eda/ (PNG figures + summary.md).

Figures: missing values, pairwise correlation of the 30 coordinates, sample faces, Gaussian keypoint
heatmaps of one face, where each keypoint falls, duplicate images, and likely label errors.

Reusable functions (no plotting): `missing_table`, `coordinate_correlation`, `gaussian_heatmaps`,
`duplicate_agreement`, `shape_residuals`, `label_outliers`.
"""
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from fkd.core.arguments import non_negative_int, positive_float, positive_int
from fkd.core.atomic import write_text
from fkd.core.keypoints import COLUMNS, KEYPOINTS, SIDES, SIZE, as_points, complete_rows
from fkd.data.duplicates import find_duplicates, near_duplicates
from fkd.data.shapes import mean_shape_alignment, mean_shape_in_row
from fkd.show import plots

FIGURES = {
    "missing.png": "missing values per keypoint; complete vs partial rows; label patterns",
    "correlation.png": "correlation of the 30 coordinates, pairwise on the values present",
    "samples.png": "random training faces with their keypoints",
    "heatmaps.png": "Gaussian keypoint heatmaps of one face, per keypoint and summed",
    "keypoint_clouds.png": "where each keypoint falls, over the mean face",
    "duplicates.png": "identical and near-identical images, side by side with their labels",
    "label_outliers.png": "rows farthest from the mean shape after similarity alignment",
}


# ---------------------------------------------------------------- numbers (reusable, no plotting)

def missing_table(keypoints) -> pd.DataFrame:
    """Per keypoint: rows present, rows missing, share missing (a point is missing if x or y is)."""
    points = as_points(np.asarray(keypoints, dtype=np.float32))
    missing = np.isnan(points).any(axis=2).sum(axis=0)
    n = len(points)
    return pd.DataFrame({"keypoint": KEYPOINTS, "present": n - missing, "missing": missing,
                         "share_missing": missing / max(n, 1)})


def label_patterns(keypoints) -> pd.Series:
    """How many rows carry each set of keypoints, largest first (index: short description)."""
    present = ~np.isnan(as_points(np.asarray(keypoints, dtype=np.float32))).any(axis=2)
    names = []
    for row in present:
        k = int(row.sum())
        if k == len(KEYPOINTS):
            names.append("all 15 points")
        elif k == 0:
            names.append("no points")
        elif k <= 5:
            names.append(f"{k} points: " + ", ".join(KEYPOINTS[i] for i in np.flatnonzero(row)))
        else:
            names.append(f"{k} points (other)")
    return pd.Series(names).value_counts()


def coordinate_correlation(keypoints, min_periods: int = 10) -> pd.DataFrame:
    """Pearson correlation of the 30 columns, each pair on the rows where both are present
    (pandas' pairwise-complete .corr; nothing is filled). Pairs with < min_periods rows are NaN."""
    frame = pd.DataFrame(np.asarray(keypoints, dtype=np.float64), columns=COLUMNS)
    return frame.corr(method="pearson", min_periods=min_periods)


def gaussian_heatmaps(keypoints, sigma: float = 2.0, size: int = SIZE) -> np.ndarray:
    """Heatmaps (..., 15, size, size) float32 with peak 1 at each keypoint (pixel centres at integer
    coordinates); a missing keypoint gives an all-zero map. Vectorised over leading dimensions."""
    points = as_points(np.asarray(keypoints, dtype=np.float32))            # (..., 15, 2)
    grid = np.arange(size, dtype=np.float32)
    dx2 = (grid - points[..., 0:1]) ** 2                                    # (..., 15, size) along x
    dy2 = (grid - points[..., 1:2]) ** 2                                    # (..., 15, size) along y
    scale = np.float32(-0.5 / sigma ** 2)
    maps = np.exp(scale * dy2)[..., :, None] * np.exp(scale * dx2)[..., None, :]
    return np.nan_to_num(maps, nan=0.0).astype(np.float32)


def duplicate_agreement(groups, keypoints, tolerance: float = 1.0) -> list:
    """Per group of rows (e.g. from find_duplicates): the largest |difference| (px) between the labels
    of its rows on the values they both carry, whether they agree (<= tolerance and the same points
    labelled), and how many values were compared."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    out = []
    for group in groups:
        group = np.asarray(group, dtype=np.int64)
        labels = keypoints[group]
        first, second = np.triu_indices(len(group), 1)
        diffs = np.abs(labels[first] - labels[second])                       # every pair in the group
        compared = int((~np.isnan(diffs)).sum())
        max_diff = float(np.nanmax(diffs)) if compared else float("nan")
        same_points = bool((np.isnan(labels) == np.isnan(labels[0])).all())
        agree = bool(same_points and compared and max_diff <= tolerance)
        out.append({"rows": [int(r) for r in group], "max_diff": max_diff, "same_points": same_points,
                    "agree": agree, "values_compared": compared})
    return out


# ---------------------------------------------------------------- figures

def plot_missing(keypoints):
    table = missing_table(keypoints)
    patterns = label_patterns(keypoints)
    n = len(keypoints)
    complete = int(complete_rows(keypoints).sum())
    fig = plots.new_figure(13, 5.5)
    ax_points, ax_rows = fig.subplots(1, 2, width_ratios=[1.1, 1])
    y = np.arange(len(table))
    ax_points.barh(y, table["share_missing"] * 100, color=[plots.SIDE_COLORS[s] for s in SIDES])
    for yi, (count, share) in enumerate(zip(table["missing"], table["share_missing"])):
        ax_points.text(share * 100 + 1, yi, f"{count:,} ({share:.0%})", va="center", fontsize=8)
    ax_points.set_yticks(y, table["keypoint"], fontsize=8)
    ax_points.invert_yaxis()
    ax_points.set_xlim(0, 118)
    ax_points.set_xlabel("rows missing the keypoint (%)")
    ax_points.set_title(f"Missing values per keypoint ({n:,} rows)")
    ax_points.legend(handles=plots.side_legend_handles("s"), fontsize=7, ncols=3,
                     loc="upper center", bbox_to_anchor=(0.5, -0.09))

    labels = [textwrap.fill(p.replace("_", " "), 34) for p in patterns.index[:12]]
    patterns = patterns.iloc[:12]
    ax_rows.barh(np.arange(len(patterns)), patterns.values,
                 color=["tab:green" if p == "all 15 points" else "tab:gray" for p in patterns.index])
    for yi, count in enumerate(patterns.values):
        ax_rows.text(count, yi, f" {count:,} ({count / max(n, 1):.0%})", va="center", fontsize=8)
    ax_rows.set_yticks(np.arange(len(patterns)), labels, fontsize=7)
    ax_rows.invert_yaxis()
    ax_rows.set_xlim(0, max(patterns.max(), 1) * 1.3)
    ax_rows.set_xlabel("rows")
    ax_rows.set_title(f"Label patterns: {complete:,} complete, {n - complete:,} partial rows"
                      + (" (12 commonest)" if len(label_patterns(keypoints)) > 12 else ""))
    return fig


def plot_correlation(keypoints):
    corr = coordinate_correlation(keypoints)
    fig = plots.new_figure(10, 8.8)
    ax = fig.subplots()
    cmap = plots.matplotlib_cmap("RdBu_r")
    image = ax.imshow(corr.to_numpy(), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(np.arange(len(COLUMNS)), COLUMNS, rotation=90, fontsize=7)
    ax.set_yticks(np.arange(len(COLUMNS)), COLUMNS, fontsize=7)
    ax.set_title("Correlation of the 30 keypoint coordinates\n"
                 "(Pearson, each pair on the rows where both are present; grey = too few rows)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    return fig


def plot_heatmaps(image, keypoints_row, sigma, row=None):
    maps = gaussian_heatmaps(keypoints_row, sigma)
    cmap = plots.matplotlib_cmap("magma")
    face = np.asarray(image, dtype=np.float32)[..., None] / 255.0 * 0.45   # dimmed face under each map
    fig = plots.new_figure(13, 7.2)
    axes = fig.subplots(3, 6).ravel()
    plots.show_image(axes[0], image, "face" + (f" (row {row})" if row is not None else ""))
    plots.draw_sides(axes[0], keypoints_row)
    for ax, name, heat in zip(axes[1:], KEYPOINTS, maps):
        alpha = 0.85 * heat[..., None]
        blended = (1 - alpha) * face + alpha * cmap(heat)[..., :3]          # one RGB image per panel
        ax.imshow(np.clip(blended, 0, 1), interpolation="nearest")
        ax.set_title(name.replace("_", " "), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    total = maps.sum(axis=0)
    ax = axes[len(KEYPOINTS) + 1]
    shown = ax.imshow(total, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title("sum of the 15 maps", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(shown, ax=axes.tolist(), shrink=0.6, label="heat (1 at a keypoint)")
    for ax in axes[len(KEYPOINTS) + 2:]:
        ax.set_axis_off()
    fig.suptitle(f"Gaussian keypoint heatmaps, sigma = {sigma:g} px (peak 1 at the keypoint)")
    return fig


def plot_keypoint_clouds(images, keypoints, per_point: int = 1500, seed: int = 0):
    points = as_points(np.asarray(keypoints, dtype=np.float32))
    rng = np.random.default_rng(seed)
    colors = plots.matplotlib_colors("tab20", len(KEYPOINTS))
    fig = plots.new_figure(10, 7.5)
    ax = fig.subplots()
    ax.imshow(np.asarray(images, dtype=np.float32).mean(axis=0), cmap="gray", vmin=0, vmax=255)
    handles = []
    for k, name in enumerate(KEYPOINTS):
        xy = points[:, k][~np.isnan(points[:, k]).any(axis=1)]
        count = len(xy)
        if len(xy) > per_point:
            xy = xy[rng.choice(len(xy), per_point, replace=False)]
        ax.scatter(xy[:, 0], xy[:, 1], s=3, color=colors[k], alpha=0.25, linewidths=0)
        if len(xy):
            mx, my = np.nanmean(points[:, k], axis=0)
            ax.scatter([mx], [my], s=40, color=colors[k], edgecolors="black", linewidths=0.8, zorder=3)
        handles.append(plots.Line2D([], [], marker="o", linestyle="", color=colors[k],
                                    markeredgecolor="black", label=f"{name} ({count:,})"))
    ax.set_xlim(-0.5, SIZE - 0.5)
    ax.set_ylim(SIZE - 0.5, -0.5)
    ax.set_xlabel("x (px; image right = subject's left)")
    ax.set_ylabel("y (px)")
    ax.set_title(f"Where each keypoint falls ({len(points):,} faces; mean face behind,\n"
                 f"up to {per_point:,} dots per keypoint, big dot = mean position)")
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="keypoint (rows)")
    return fig


def plot_duplicates(images, keypoints, exact, near, max_pairs: int = 12):
    """Pairs side by side, each face with its own labels: identical images first (disagreeing labels
    first), then near-identical ones (most similar first). `exact`/`near`: duplicate_agreement items,
    near ones with a "similarity" key."""
    shown = sorted(exact, key=lambda a: (a["agree"], -np.nan_to_num(a["max_diff"])))
    shown = (shown + list(near))[:max_pairs]
    if not shown:
        return plots.empty_figure(f"No identical or near-identical images among {len(images):,} rows.")
    n = len(shown)
    nrows, pairs_per_row = plots.grid_shape(n, 3)
    fig = plots.new_figure(2.0 * 2 * pairs_per_row, 2.25 * nrows + 0.9)
    axes = np.atleast_1d(fig.subplots(nrows, 2 * pairs_per_row, squeeze=False))
    axes = axes.reshape(nrows, pairs_per_row, 2).reshape(-1, 2)
    for (ax_a, ax_b), item in zip(axes, shown):
        a, b = item["rows"][:2]
        kind = f"near, r={item['similarity']:.3f}" if "similarity" in item else "identical"
        if len(item["rows"]) > 2:
            kind += f", {len(item['rows'])} rows"
        diff = "no common labels" if np.isnan(item["max_diff"]) else f"label diff {item['max_diff']:.1f} px"
        verdict = "agree" if item["agree"] else "DIFFER"
        plots.show_image(ax_a, images[a], f"row {a} ({kind})", fontsize=7)
        plots.show_image(ax_b, images[b], f"row {b}: {diff}, {verdict}", fontsize=7)
        plots.draw_sides(ax_a, keypoints[a], size=12)
        plots.draw_sides(ax_b, keypoints[b], size=12)
    for ax in axes[n:].ravel():
        ax.set_axis_off()
    disagree = sum(not a["agree"] for a in exact)
    fig.suptitle(f"Duplicates: {len(exact)} groups of identical images ({disagree} with labels that differ), "
                 f"{len(near)} near-identical pairs\n(showing {n}; identical first, then near-identical)",
                 fontsize=10)
    fig.legend(handles=plots.side_legend_handles(), loc="outside lower center", ncols=3, fontsize=8)
    return fig


def plot_outliers(images, keypoints, indices, residuals, mean):
    if len(indices) == 0:
        return plots.empty_figure("No row has 3 or more keypoints: nothing to align.")
    n = len(indices)
    nrows, ncols = plots.grid_shape(n, 5)
    fig = plots.new_figure(2.2 * ncols, 2.35 * nrows + 0.8)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, row, residual in zip(axes, indices, residuals):
        present = int((~np.isnan(as_points(keypoints[row])).any(axis=1)).sum())
        plots.show_image(ax, images[row], f"row {row}: {residual:.1f} px ({present} pts)")
        reference = mean_shape_in_row(mean, keypoints[row])
        ax.scatter(reference[:, 0], reference[:, 1], s=14, marker="+", c="white", linewidths=0.8, zorder=2)
        plots.draw_sides(ax, keypoints[row])
        ax.set_xlim(-0.5, SIZE - 0.5)
        ax.set_ylim(SIZE - 0.5, -0.5)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle("Likely label errors: rows farthest from the mean shape after a similarity alignment\n"
                 "(residual in px per coordinate, largest first; white + = mean shape fitted to the labels)")
    fig.legend(handles=plots.side_legend_handles(), loc="outside lower center", ncols=3, fontsize=8)
    return fig


# ---------------------------------------------------------------- the command

def run_eda(images, keypoints, out_dir, sigma: float = 2.0, seed: int = 0, samples: int = 16,
            top: int = 20) -> dict:
    """Write every figure and summary.md/summary.json into out_dir; return the numbers."""
    images = np.asarray(images)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(images)
    rng = np.random.default_rng(seed)
    complete = complete_rows(keypoints)

    plots.save_figure(plot_missing(keypoints), out / "missing.png")
    plots.save_figure(plot_correlation(keypoints), out / "correlation.png")

    chosen = np.sort(rng.choice(n, min(samples, n), replace=False))
    titles = [f"row {i} ({int((~np.isnan(as_points(keypoints[i])).any(axis=1)).sum())} pts)" for i in chosen]
    plots.save_figure(plots.face_grid(images[chosen], keypoints[chosen], titles=titles,
                                      suptitle=f"{len(chosen)} random training faces"), out / "samples.png")

    heat_row = int(rng.choice(np.flatnonzero(complete))) if complete.any() else int(
        np.argmax((~np.isnan(keypoints)).sum(axis=1)))
    plots.save_figure(plot_heatmaps(images[heat_row], keypoints[heat_row], sigma, heat_row), out / "heatmaps.png")
    plots.save_figure(plot_keypoint_clouds(images, keypoints, seed=seed), out / "keypoint_clouds.png")

    groups = find_duplicates(images)
    agreement = duplicate_agreement(groups, keypoints)
    identical = {tuple(sorted(pair)) for g in groups for pair in zip(g[:-1], g[1:])}
    near = [dict(item, similarity=sim)
            for (i, j, sim) in near_duplicates(images) if (i, j) not in identical
            for item in duplicate_agreement([[i, j]], keypoints)]
    plots.save_figure(plot_duplicates(images, keypoints, agreement, near), out / "duplicates.png")

    mean, _, all_residuals = mean_shape_alignment(keypoints)
    judged = np.flatnonzero(~np.isnan(all_residuals))
    order = judged[np.argsort(-all_residuals[judged], kind="stable")][:top]
    plots.save_figure(plot_outliers(images, keypoints, order, all_residuals[order], mean),
                      out / "label_outliers.png")

    missing = missing_table(keypoints)
    summary = {
        "rows": n, "complete_rows": int(complete.sum()), "partial_rows": int(n - complete.sum()),
        "label_patterns": {k: int(v) for k, v in label_patterns(keypoints).items()},
        "missing_per_keypoint": {r.keypoint: int(r.missing) for r in missing.itertuples()},
        "duplicate_groups": len(groups),
        "duplicate_rows": int(sum(len(g) for g in groups)),
        "duplicate_groups_disagreeing": int(sum(not a["agree"] for a in agreement)),
        "duplicates": agreement,
        "near_duplicate_pairs": len(near),
        "near_duplicates": near,
        "heatmap_row": heat_row, "sigma": sigma,
        "residual_median": float(np.nanmedian(all_residuals)) if len(judged) else None,
        "top_outliers": [{"row": int(r), "residual": round(float(all_residuals[r]), 3)} for r in order],
    }
    write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text(out / "summary.md", summary_markdown(summary, missing))
    return summary


def summary_markdown(summary, missing) -> str:
    lines = ["# EDA summary", "",
             f"- rows: {summary['rows']:,}: {summary['complete_rows']:,} complete (15 points), "
             f"{summary['partial_rows']:,} partial", ""]
    lines += ["## Figures", ""] + [f"- `{name}`: {what}" for name, what in FIGURES.items()] + [""]
    lines += ["## Label patterns", "", "| rows | keypoints present |", "| ---: | --- |"]
    lines += [f"| {count:,} | {pattern} |" for pattern, count in summary["label_patterns"].items()] + [""]
    lines += ["## Missing values", "", "| keypoint | missing | share |", "| --- | ---: | ---: |"]
    lines += [f"| {r.keypoint} | {r.missing:,} | {r.share_missing:.1%} |" for r in missing.itertuples()] + [""]
    lines += ["## Duplicates", "",
              f"- {summary['duplicate_groups']} groups of identical images ({summary['duplicate_rows']} rows); "
              f"{summary['duplicate_groups_disagreeing']} groups whose labels disagree (> 1 px or other points)"]
    for item in [a for a in summary["duplicates"] if not a["agree"]][:10]:
        lines.append(f"  - rows {item['rows']}: max diff {item['max_diff']:.1f} px, "
                     f"same points labelled: {item['same_points']}")
    lines.append(f"- {summary['near_duplicate_pairs']} near-identical pairs (thumbnail correlation >= 0.97: "
                 "the same photo cropped or processed differently); most similar:")
    for item in summary["near_duplicates"][:10]:
        lines.append(f"  - rows {item['rows']}: r = {item['similarity']:.4f}, "
                     f"label diff {item['max_diff']:.1f} px")
    lines += ["", "## Likely label errors", "",
              f"Residual after a similarity (Procrustes) alignment onto the mean shape, px per coordinate; "
              f"median over rows {summary['residual_median'] if summary['residual_median'] is None else round(summary['residual_median'], 2)}.",
              "", "| row | residual (px) |", "| ---: | ---: |"]
    lines += [f"| {o['row']} | {o['residual']:.2f} |" for o in summary["top_outliers"]]
    lines += ["", f"Heatmaps: row {summary['heatmap_row']}, sigma {summary['sigma']:g} px.", ""]
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--data-dir", default=None, help="competition folder (default: ./data, or found)")
    parser.add_argument("--out", default="reports/eda", help="output folder (default: reports/eda)")
    parser.add_argument("--sigma", type=positive_float, default=2.0,
                        help="Gaussian heatmap sigma in px, above 0 (default 2)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="which random faces are shown: a seed, 0 or more (default 0)")
    parser.add_argument("--samples", type=positive_int, default=16, help="faces in samples.png, 1 or more (default 16)")
    parser.add_argument("--top", type=positive_int, default=20,
                        help="likely label errors shown, 1 or more (default 20)")


def run(args):
    from fkd.data import competition as data

    data_dir = data.find_data_dir(args.data_dir)
    images, keypoints = data.load_training(data_dir)
    summary = run_eda(images, keypoints, args.out, sigma=args.sigma, seed=args.seed,
                      samples=args.samples, top=args.top)
    print(f"{summary['rows']:,} rows ({summary['complete_rows']:,} complete), "
          f"{summary['duplicate_groups']} groups of identical images, {summary['near_duplicate_pairs']} "
          f"near-identical pairs (the same photo re-cropped) -> {args.out}/summary.md")
    return 0
