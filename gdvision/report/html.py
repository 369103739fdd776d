"""The report as one self-contained HTML page: inline CSS, a few lines of inline script (table sorting), pictures
and plots embedded as base64 ``data:`` images; no external URL, script or font.

Links to the run's files are relative to the page's folder, so the run folder can be moved or archived (a CI
artifact) with its ``report.html`` inside and the links still work.
"""

from __future__ import annotations

import base64
import os
import time
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gdvision.report.build import Report, numeric
from gdvision.report.pictures import Picture, item_pictures

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.2em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
h3{font-size:1em;margin:.8em 0 .3em}.muted{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;background:#fff}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#eef;cursor:pointer;white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fde8e8}tr.regressed td{background:#fff0d9}tr.regressed td.v,td.bad{color:#b00;font-weight:600}
.verdict{padding:.5em 1em;border-radius:4px;font-weight:600;display:inline-block;margin:.4em 0}
.bad-v{background:#fde8e8;color:#a00;border:1px solid #e99}.good-v{background:#e6f6e6;color:#161;border:1px solid #9c9}
.note{background:#fff8e0;border:1px solid #e8d48a;padding:.4em .8em;margin:.3em 0;border-radius:3px}
.grid{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px}
.card figure{display:inline-block;margin:2px 4px;vertical-align:top;max-width:540px}
.card figcaption{font-size:.75em;color:#555}.card img{display:block;max-width:100%}
.settings code{display:inline-block;background:#fff;border:1px solid #ddd;margin:1px;padding:0 4px}
.missing{font-size:.8em;color:#a00;max-width:300px}pre{background:#fff;border:1px solid #ddd;padding:.5em;overflow:auto}
"""

SCRIPT = """
function sortBy(th){var t=th.closest('table'),b=t.tBodies[0],i=th.cellIndex,d=th.dataset.d==='1'?-1:1;
th.dataset.d=d===1?'1':'0';var rows=Array.from(b.rows);rows.sort(function(x,y){
var a=x.cells[i].dataset.v,c=y.cells[i].dataset.v;if(a===undefined){a=x.cells[i].textContent;c=y.cells[i].textContent;
return d*a.localeCompare(c);}a=a===''?Infinity:+a;c=c===''?Infinity:+c;return d*(a-c);});
rows.forEach(function(r){b.appendChild(r);});}
"""


def _fmt(v: Any) -> str:
    x = numeric(v)
    if x is None:
        return "" if v is None else escape(str(v))
    return f"{x:.5g}"


def _img(data: bytes, mime: str, alt: str) -> str:
    return f'<img src="data:{mime};base64,{base64.b64encode(data).decode()}" alt="{escape(alt)}">'


def _href(path: Path, page: Path) -> str:
    try:
        rel = os.path.relpath(path.resolve(), page.resolve().parent)
    except ValueError:  # another drive (Windows)
        rel = str(path.resolve())
    return quote(rel.replace(os.sep, "/"))


def _figure(pic: Picture, page: Path) -> str:
    cap = escape(pic.label)
    if pic.data is None:
        body = f'<div class="missing">{escape(pic.note or "no picture")}</div>'
    else:
        body = _img(pic.data, "image/jpeg", pic.label)
    if pic.link is not None:
        body = f'<a href="{_href(pic.link, page)}">{body}</a>'
        cap += f' &middot; <a href="{_href(pic.link, page)}">{escape(pic.link.name)}</a>'
    return f"<figure>{body}<figcaption>{cap}</figcaption></figure>"


def _summary(rep: Report) -> list[str]:
    run = rep.run
    sec = rep.seconds()
    rows = [
        ("command", run.command),
        ("run", str(run.path)),
        ("items", f"{len(run.records)} ({len(run.ok)} ok, {len(run.failed)} failed)"),
        (
            "seconds per item",
            f"mean {sec['mean']:.3g}, median {sec['median']:.3g}, max {sec['max']:.3g} (total {sec['total']:.1f} s)"
            if sec
            else "not recorded",
        ),
        ("device", ", ".join(rep.devices()) or "not recorded"),
        ("versions (report's environment)", ", ".join(f"{k} {v}" for k, v in rep.environment.items())),
        ("run logs", ", ".join(p.name for p in run.logs)),
    ]
    out = ["<h2>Summary</h2><table>"]
    out += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    params = run.params()
    if params:
        chips = " ".join(f"<code>{escape(k)}={escape(_setting(v))}</code>" for k, v in params.items())
        out.append(f"<h3>Settings</h3><p class='settings'>{chips}</p>")
    if run.failed:
        out.append(f"<h3>Failures ({len(run.failed)})</h3><table><tr><th>id</th><th>error</th></tr>")
        out += [
            f'<tr class="failed"><td><a href="#item-{escape(r["id"])}">{escape(r["id"])}</a></td>'
            f"<td>{escape(str(r.get('error') or 'no error line'))}</td></tr>"
            for r in run.failed
        ]
        out.append("</table>")
    return out


def _setting(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_setting(x)}" for k, x in v.items())
    return str(v)


def _notes(rep: Report) -> list[str]:
    notes = list(rep.run.notes)
    if rep.missing_files:
        shown = ", ".join(rep.missing_files[:8]) + (" ..." if len(rep.missing_files) > 8 else "")
        notes.append(
            f"{len(rep.missing_files)} output file(s) named in the log are missing (deleted after the run?): {shown}"
        )
    if rep.baseline is not None:
        notes += [f"baseline: {n}" for n in rep.baseline.notes]
    if rep.comparison is not None:
        notes += list(rep.comparison.notes) + [f"comparison: {p}" for p in rep.comparison.problems]
    return [f'<div class="note">{escape(n)}</div>' for n in notes]


def _baseline(rep: Report) -> list[str]:
    from gdvision.report.plots import change_bars

    comp, base = rep.comparison, rep.baseline
    assert comp is not None and base is not None
    bad = comp.failed
    cls = "bad-v" if bad else "good-v"
    head = (
        f'<h2>Against the baseline</h2><div class="verdict {cls}" id="verdict">verdict: {escape(rep.verdict or "")} '
        f"&mdash; {len(comp.regressed_items)} regressed, {len(comp.improved_items)} improved, "
        f"{comp.compared} compared, "
        f"{len(comp.missing)} missing, {len(comp.new_items)} new</div>"
        f'<p class="muted">baseline {escape(str(base.path))}; the rule of <code>gdvision compare</code> '
        f"(allowed worsening max({comp.tolerance:g}, {comp.rel_tolerance:g} &times; baseline)); metrics: "
        f"{escape(', '.join(comp.metrics) or 'none')}</p>"
    )
    out = [head]
    if comp.regressions:
        out.append("<table><tr><th>regressed item</th><th>metric</th><th>run</th><th>baseline</th><th>change</th></tr>")
        for r in comp.regressions:
            run_v, base_v = r.get("run"), r.get("baseline")
            change = ""
            if numeric(run_v) is not None and numeric(base_v) is not None:
                change = f"{numeric(run_v) - numeric(base_v):+.4g}"
                if base_v:
                    change += f" ({100 * (numeric(run_v) - numeric(base_v)) / abs(numeric(base_v)):+.1f}%)"
            out.append(
                f'<tr class="regressed"><td><a href="#item-{escape(r["id"])}">{escape(r["id"])}</a></td>'
                f"<td>{escape(r['metric'])}</td><td class='v'>{_fmt(run_v)}</td><td>{_fmt(base_v)}</td>"
                f"<td class='bad'>{escape(change)}</td></tr>"
            )
        out.append("</table>")
    regressed = {(r["id"], r["metric"]) for r in comp.regressions}
    improved = {(r["id"], r["metric"]) for r in comp.improvements}
    runs, bases = rep.by_id(), {r["id"]: r for r in base.records}
    plots = []
    for m in comp.metrics:
        changes = []
        for iid in sorted(set(runs) & set(bases)):
            a = numeric((runs[iid].get("metrics") or {}).get(m))
            b = numeric((bases[iid].get("metrics") or {}).get(m))
            if a is not None and b is not None:
                kind = "regressed" if (iid, m) in regressed else "improved" if (iid, m) in improved else ""
                changes.append((iid, a - b, kind))
        if changes:
            plots.append(f'<div class="card">{_img(change_bars(m, changes), "image/png", m + " change")}</div>')
    if plots:
        out.append('<h3>Per-item change</h3><div class="grid">' + "".join(plots) + "</div>")
    return out


def _distributions(rep: Report) -> list[str]:
    from gdvision.report.plots import histogram
    from gdvision.runs.compare import direction

    cards = []
    by_id = rep.by_id()
    for m in rep.quality:
        vals = [v for r in rep.run.ok if (v := numeric((r.get("metrics") or {}).get(m))) is not None]
        marked = [numeric(by_id[i]["metrics"][m]) for i in rep.worst.get(m, [])]
        note = {-1: "lower is better", 1: "higher is better", 0: "neutral"}[direction(m)]
        png = histogram(m, vals, [x for x in marked if x is not None], note)
        cards.append(f'<div class="card">{_img(png, "image/png", m + " histogram")}</div>')
    if not cards:
        return ["<h2>Distributions</h2><p>No item logged a numeric metric.</p>"]
    return [
        '<h2>Distributions</h2><p class="muted">dashed: median; red: the worst items shown below</p>',
        '<div class="grid">' + "".join(cards) + "</div>",
    ]


def _worst(rep: Report) -> list[str]:
    if rep.worst_n == 0 or not rep.worst:
        return []
    out = [f"<h2>Worst {rep.worst_n} items per metric</h2>"]
    drawn: set[str] = set()
    by_id = rep.by_id()
    for m, ids in rep.worst.items():
        out.append(f"<h3>{escape(m)}</h3><div class='grid'>")
        for iid in ids:
            rec = by_id[iid]
            head = (
                f"<div><a href='#item-{escape(iid)}'><b>{escape(iid)}</b></a> {escape(m)} = "
                f"{_fmt((rec.get('metrics') or {}).get(m))}</div>"
            )
            if iid in drawn:
                body = f"<div class='muted'>pictures: see <a href='#pics-{escape(iid)}'>above</a></div>"
            else:
                drawn.add(iid)
                pics = item_pictures(rep.run.command, rec, rep.run.folder)
                body = f"<div id='pics-{escape(iid)}'>" + "".join(_figure(p, rep.out) for p in pics) + "</div>"
            out.append(f"<div class='card'>{head}{body}</div>")
        out.append("</div>")
    return out


def _table(rep: Report) -> list[str]:
    comp = rep.comparison
    bad = set(comp.regressed_items) if comp is not None else set()
    good = set(comp.improved_items) if comp is not None else set()
    cols = ["id", "status"] + (["vs baseline"] if comp is not None else []) + rep.metrics + ["seconds", "error"]
    out = [
        f"<h2>All items ({len(rep.run.records)})</h2><p class='muted'>click a column to sort</p>",
        "<table id='items'><thead><tr>" + "".join(f"<th onclick='sortBy(this)'>{escape(c)}</th>" for c in cols),
        "</tr></thead><tbody>",
    ]
    for r in rep.run.records:
        iid = r["id"]
        status = r.get("status", "?")
        cls = "failed" if status != "ok" else "regressed" if iid in bad else ""
        cells = [f"<td id='item-{escape(iid)}'>{escape(iid)}</td>", f"<td>{escape(str(status))}</td>"]
        if comp is not None:
            cells.append(f"<td>{'regressed' if iid in bad else 'improved' if iid in good else ''}</td>")
        metrics = r.get("metrics") or {}
        for c in [*rep.metrics, "seconds"]:
            v = r.get("seconds") if c == "seconds" else metrics.get(c)
            x = numeric(v)
            cells.append(f"<td class='n' data-v='{'' if x is None else repr(x)}'>{_fmt(v)}</td>")
        cells.append(f"<td>{escape(str(r.get('error') or ''))}</td>")
        out.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def render(rep: Report) -> str:
    """The whole page as a string."""
    title = f"gdvision {rep.run.command} run: {rep.run.folder.name}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>report written {time.strftime('%Y-%m-%d %H:%M:%S')} from {escape(str(rep.run.path))}</p>",
    ]
    parts += _notes(rep)
    if rep.comparison is not None:
        parts += _baseline(rep)
    parts += _summary(rep)
    parts += _distributions(rep)
    parts += _worst(rep)
    parts += _table(rep)
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["render"]
