"""matplotlib without a display, and PNGs written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from evo_merge.weights_io import atomic_write_bytes


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (works on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any) -> bytes:
    """Lay out, render and close a figure."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return buf.getvalue()


def write_png(fig: Any, path: Path) -> Path:
    atomic_write_bytes(Path(path), png_bytes(fig))
    return Path(path)
