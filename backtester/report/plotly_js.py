"""How a report loads plotly.js (4.8 MB): inlined, from the CDN, or one shared file.

* ``inline`` (default): the library is written into ``report.html``; the page is one
  self-contained file that opens offline, anywhere.
* ``shared``: the library is written once as ``plotly-<version>.min.js`` next to the run
  folders (the ``--output-dir``, ``reports/`` by default) and each report references it by a
  relative path; the report opens offline as long as it stays next to that file.
* ``cdn``: the report references ``https://cdn.plot.ly/plotly-<version>.min.js`` (with a
  subresource-integrity hash of the bundled library); viewing it then needs a network
  connection, and its charts stay blank offline.
"""

from __future__ import annotations

import base64
import hashlib
import os
from enum import StrEnum
from pathlib import Path

__all__ = ["PlotlyMode", "plotly_script"]

#: Comments around the plotly.js ``<script>`` of a report (a vendored library: its source text
#: holds URLs of map tile servers and of plotly's site that the page never uses).
PLOTLYJS_BEGIN = "<!-- PLOTLYJS BEGIN -->"
PLOTLYJS_END = "<!-- PLOTLYJS END -->"


class PlotlyMode(StrEnum):
    """Where a report's plotly.js comes from (see the module docstring)."""

    INLINE = "inline"
    CDN = "cdn"
    SHARED = "shared"


def shared_file_name() -> str:
    """Return the file name of the shared library, e.g. ``plotly-3.1.0.min.js``."""
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


def _write_shared(folder: Path, source: str) -> Path:
    from backtester.data.store import atomic_write_bytes

    path = folder / shared_file_name()
    data = source.encode("utf-8")
    if not path.is_file() or path.stat().st_size != len(data):
        atomic_write_bytes(path, data)  # written once; a torn or stale copy is replaced
    return path


def plotly_script(mode: PlotlyMode, *, report_dir: Path, shared_dir: Path | None = None) -> str:
    """Return the ``<script>`` that loads plotly.js for a report written in ``report_dir``.

    ``shared_dir`` is where the ``shared`` library goes (default: the parent of
    ``report_dir``, i.e. the output folder that holds the run folders).
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    source = get_plotlyjs()
    if mode is PlotlyMode.INLINE:
        tag = f"<script>{source}</script>"
    elif mode is PlotlyMode.CDN:
        digest = base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode()
        url = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
        tag = (f'<script charset="utf-8" src="{url}" integrity="sha256-{digest}" '
               'crossorigin="anonymous"></script>')
    else:
        path = _write_shared(shared_dir or report_dir.resolve().parent, source)
        rel = Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix()
        tag = f'<script charset="utf-8" src="{rel}"></script>'
    return f"{PLOTLYJS_BEGIN}{tag}{PLOTLYJS_END}"
