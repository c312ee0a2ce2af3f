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
    ax.annotate(f"largest same\n{side['largest_same']:.3f}", (side["largest_same"], 0),
                xytext=(side["largest_same"] - 0.28, 3.2), color=SAME, fontsize=8,
                arrowprops={"arrowstyle": "->", "color": SAME})
    ax.annotate(f"smallest different\n{side['smallest_different']:.3f}",
                (side["smallest_different"], 0), xytext=(side["smallest_different"] + 0.05, 3.2),
                color=DIFF, fontsize=8, arrowprops={"arrowstyle": "->", "color": DIFF})
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


def _curves(ax: Any, result: dict[str, Any]) -> None:
    styles = {"single": ("-", "single frame"), "per_frame": (":", "every frame (blurred too)"),
              "fused": ("--", "fused (median of best 3)")}
    for kind, (ls, label) in styles.items():
        curve = result[kind]["curve"]
        t = [c["threshold"] for c in curve]
        ax.plot(t, [100 * c["frr"] for c in curve], ls=ls, color=SAME,
                label=f"false rejects, {label}")
        ax.plot(t, [100 * c["far"] for c in curve], ls=ls, color=DIFF,
                label=f"false accepts, {label}")
    chosen = result["fused"]["choice"].get("threshold")
    _marks(ax, result, chosen)
    ax.set_title("false accepts / false rejects per threshold", fontsize=10)
    ax.set_xlabel("threshold (accept when distance ≤ threshold)")
    ax.set_ylabel("% of pairs (of frames, for 'every frame')")
    ax.set_ylim(-2, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center")


def draw(result: dict[str, Any], path: Path) -> None:
    """Write the PNG: two histograms on top (single frame, fused), the curves below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 9), dpi=100)
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.1])
    _hist(fig.add_subplot(grid[0, 0]), result, "single", "single frame (0.15 s into the stream)")
    _hist(fig.add_subplot(grid[0, 1]), result, "fused",
          "fused: median of the best 3 of 8 frames (one blurred)")
    _curves(fig.add_subplot(grid[1, :]), result)
    v = result["versions"]
    fig.suptitle(f"Face threshold calibration, {result['date']}: {result['photos']['count']} "
                 f"photos of {len(result['photos']['identities'])} adults, 640x480 VP8 at "
                 f"{result['live_path']['bitrate'] // 1000} kbit/s; face_recognition "
                 f"{v['face_recognition']}, dlib {v['dlib']}, {v['detector']}", fontsize=10)
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
