"""The calibration bench's picture: distance histograms (same person vs different people) and
the false accept / false reject curves, the chosen and the configured threshold marked.

    .venv/bin/python -m bench.calibration_plot RESULT.json OUT.png

Needs matplotlib (the optional `bench` extra: `pip install -e .[bench]`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SAME, DIFF = "#1f77b4", "#d62728"


def _hist(ax: Any, result: dict[str, Any], kind: str, title: str) -> None:
    side = result[kind]
    pairs = result["pairs"]
    same = [p[kind] for p in pairs if p["same"] and p[kind] is not None]
    diff = [p[kind] for p in pairs if not p["same"] and p[kind] is not None]
    bins = [i * 0.02 for i in range(0, 59)]
    ax.hist(same, bins=bins, color=SAME, alpha=0.6, density=True,
            label=f"same person ({len(same)} pairs)")
    ax.hist(diff, bins=bins, color=DIFF, alpha=0.6, density=True,
            label=f"different people ({len(diff)} pairs)")
    chosen = side["choice"].get("threshold")
    _marks(ax, result, chosen)
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.35)
    ax.annotate(f"largest same {side['largest_same']:.3f}", (side["largest_same"], 0.05),
                xytext=(0.02, top * 0.55), color=SAME, fontsize=8,
                arrowprops={"arrowstyle": "->", "color": SAME})
    ax.annotate(f"smallest different {side['smallest_different']:.3f}",
                (side["smallest_different"], 0.05), xytext=(0.8, top * 1.2), color=DIFF,
                fontsize=8, arrowprops={"arrowstyle": "->", "color": DIFF})
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("face distance (enrolled upload vs live VP8 frame)")
    ax.set_ylabel("density")
    ax.set_xlim(0, 1.15)
    ax.legend(fontsize=8, loc="upper left")


def _marks(ax: Any, result: dict[str, Any], chosen: float | None) -> None:
    if chosen is not None:
        ax.axvline(chosen, color="black", lw=1.5, label=f"chosen {chosen:.2f}")
    configured = result["configured_threshold"]
    if configured != chosen:
        ax.axvline(configured, color="grey", lw=1, ls=":", label=f"configured {configured:.2f}")


def _curves(ax: Any, result: dict[str, Any], zoom: tuple[float, float] | None = None) -> None:
    """FAR and FRR per threshold; `zoom`: only that range, in pairs (frames) counted."""
    styles = {"single": ("-", "single frame"), "per_frame": (":", "every frame (blurred too)"),
              "fused": ("--", "fused (median of best 3)")}
    for kind, (ls, label) in styles.items():
        curve = result[kind]["curve"]
        if zoom:
            curve = [c for c in curve if zoom[0] <= c["threshold"] <= zoom[1]]
        t = [c["threshold"] for c in curve]
        rej = [c["false_rejects"] if zoom else 100 * c["frr"] for c in curve]
        acc = [c["false_accepts"] if zoom else 100 * c["far"] for c in curve]
        ax.plot(t, rej, ls=ls, color=SAME, marker="." if zoom else None,
                label=f"false rejects, {label}")
        ax.plot(t, acc, ls=ls, color=DIFF, marker="." if zoom else None,
                label=f"false accepts, {label}")
    chosen = result["fused"]["choice"].get("threshold")
    _marks(ax, result, chosen)
    ax.set_xlabel("threshold (accept when distance ≤ threshold)")
    ax.grid(alpha=0.3)
    if zoom:
        ax.set_title(f"the gap, {zoom[0]:.2f}–{zoom[1]:.2f}: errors counted", fontsize=10)
        ax.set_ylabel("pairs wrongly decided (frames, for 'every frame')")
        ax.set_ylim(-0.5, 25)
        ax.set_xlim(zoom[0] - 0.005, zoom[1] + 0.005)
        return
    ax.set_title("false accepts / false rejects per threshold", fontsize=10)
    ax.set_ylabel("% of pairs (of frames, for 'every frame')")
    ax.set_ylim(-2, 100)
    ax.legend(fontsize=7, loc="center left")


def draw(result: dict[str, Any], path: Path) -> None:
    """Write the PNG: two histograms on top (single frame, fused), the curves below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 10), dpi=100)
    grid = fig.add_gridspec(2, 2)
    _hist(fig.add_subplot(grid[0, 0]), result, "single", "single frame (0.15 s into the stream)")
    _hist(fig.add_subplot(grid[0, 1]), result, "fused",
          "fused: median of the best 3 of 8 frames (one blurred)")
    _curves(fig.add_subplot(grid[1, 0]), result)
    _curves(fig.add_subplot(grid[1, 1]), result, zoom=(0.55, 0.66))
    v = result["versions"]
    fig.suptitle(f"Face threshold calibration, {result['date']}: {result['photos']['count']} "
                 f"photos of {len(result['photos']['identities'])} adults, every ordered pair, "
                 f"live side 640x480 VP8 at {result['live_path']['bitrate'] // 1000} kbit/s\n"
                 f"face_recognition {v['face_recognition']}, dlib {v['dlib']}, detector: "
                 f"{v['detector']} on a {v['detect_width']} px wide copy", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    draw(json.loads(Path(args[0]).read_text()), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
