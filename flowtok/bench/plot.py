"""The PNG of a `flowtok bench sample` result: ms per image per stage and, with ``compare``, each
variant's speed over eager. matplotlib is an optional extra (``flowtok[plot]``)."""

from __future__ import annotations

import os
from pathlib import Path

from flowtok.atomic import AtomicFile
from flowtok.errors import FlowTokError


def require_matplotlib() -> None:
    """Fail before a long run when --plot cannot be honoured."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise FlowTokError("--plot needs matplotlib, an optional extra: pip install 'flowtok[plot]'")


def save_plot(result: dict, path: str | os.PathLike) -> None:
    """ms/image per stage and (with compare) the ratio of each variant over plain PyTorch, as a PNG
    written atomically."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = [r for r in (result.get("compare") or {}).get("rows", []) if r["status"] == "ok"]
    fig, axes = plt.subplots(1, 2 if rows else 1, figsize=(12 if rows else 6, 4), squeeze=False)
    stages = result["stages"]
    names = ["text", "flow", "decode", "end_to_end"]
    axes[0][0].barh(names, [stages[n]["ms_per_image"] for n in names])
    axes[0][0].set_xlabel("ms per image")
    axes[0][0].invert_yaxis()
    axes[0][0].set_title(f"{result['preset']}, batch {result['batch']}, {result['dtype']}")
    if rows:
        axes[0][1].barh([r["name"] for r in rows], [r["ratio_vs_plain"] for r in rows])
        axes[0][1].axvline(1.0, color="k", lw=0.8)
        axes[0][1].set_xlabel("speed vs plain PyTorch (flow stage)")
        axes[0][1].invert_yaxis()
    fig.suptitle(f"flowtok bench sample on {result['device']['name']} ({result['weights']})",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with AtomicFile(path) as f:
            fig.savefig(f, dpi=120, format="png")
    finally:
        plt.close(fig)
