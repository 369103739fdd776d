"""``gdvision report``: one self-contained HTML page about a manifest run (and how it compares with a baseline).

- :mod:`gdvision.report.load`: the run folder's records (merged torchrun logs, resumed runs, torn lines noted);
- :mod:`gdvision.report.build`: what the page says (counts, failures, worst items, ``compare``'s verdict);
- :mod:`gdvision.report.plots`: histograms and per-item change plots (matplotlib, imported only here);
- :mod:`gdvision.report.pictures`: each item's pictures as small JPEG thumbnails;
- :mod:`gdvision.report.html`: the page.

Example:
    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> recs = [{"id": f"i{k}", "index": k, "status": "ok", "metrics": {"mean": k / 10}, "seconds": 0.1,
    ...          "params": {"op": "sobel", "what": "magnitude"}} for k in range(3)]
    >>> _ = (d / "run.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in recs))
    >>> rep = write_report(d, worst=1)
    >>> rep.out.name, rep.run.command, rep.worst
    ('report.html', 'edges', {'mean': ['i0']})
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gdvision.report.build import Report, build_report
from gdvision.report.load import RunData, load_run


def write_report(
    run_dir: str | os.PathLike[str],
    baseline: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    worst: int = 5,
    claim: Callable[[Path], Path] | None = None,
    overwrite: bool = False,
) -> Report:
    """Build the report of ``run_dir`` and write it (default ``<run_dir>/report.html``, written atomically).

    ``claim``: the run's output policy's claim (manifest ``--report``); without it the file is claimed through an
    :class:`~gdvision.tasks.outputs.OutputPolicy` that protects the run logs and refuses an existing file unless
    ``overwrite`` (UsageError, exit 2). ``worst``: how many worst items per metric get their pictures.
    """
    from gdvision.io.images import atomic_write_bytes
    from gdvision.report.html import render

    rep = build_report(run_dir, baseline, out, worst)
    if claim is None:
        from gdvision.tasks.outputs import OutputPolicy

        logs = rep.run.logs + (rep.baseline.logs if rep.baseline is not None else [])
        claim = OutputPolicy(None, inputs=logs, overwrite=overwrite).claim
    target = claim(rep.out)
    page = render(rep)
    atomic_write_bytes(target, page.encode("utf-8"))
    return rep


__all__ = ["Report", "RunData", "build_report", "load_run", "write_report"]
