"""The campaign's QC summary: CSV table, plots and the HTML page of every scene's verdict."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from tilepipe.core.raster import atomic_output, atomic_outputs

_COLOURS = {"pass": "#d4edda", "warn": "#fff3cd", "fail": "#f8d7da"}
_STATUS_COLOURS = {"pass": "#4caf50", "warn": "#ffb300", "fail": "#e53935"}

#: The number summary.csv and the value plot show for checks whose value is a mapping.
HEADLINE = {
    "dr_consistency": "worst_l1",
    "dr_coverage": "ratio",
    "sr_spatial": "shift_px",
    "field_area": "median_m2",
    "class_distribution": "dominant_share",
}
#: The threshold keys drawn as warn / fail lines on the value plot.
_LINES = {"dr_consistency": ("l1_warn", "l1_fail")}


def headline(check: dict) -> float | None:
    """One number standing for a check's value (None when it has none)."""
    value = check.get("value")
    if isinstance(value, dict):
        value = value.get(HEADLINE.get(check["name"], ""))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _load(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in sorted(paths or [])]


def write_summary_csv(scene: list[dict], classification: list[dict], dst: str | Path) -> None:
    """One row per (tile, date): scene and classification status, each check's status + value."""
    by_key = {(r["tile"], r["date"]): r for r in classification}
    reports = [(r, by_key.get((r["tile"], r["date"]))) for r in scene]
    names: list[str] = []
    for r, c in reports:
        for check in [*r["checks"], *(c["checks"] if c else [])]:
            if check["name"] not in names:
                names.append(check["name"])
    header = ["tile", "date", "status", "classification_status"]
    header += [f"{n}{suffix}" for n in names for suffix in ("", "_value")]
    rows = []
    for r, c in reports:
        checks = {ch["name"]: ch for ch in [*r["checks"], *(c["checks"] if c else [])]}
        row = [r["tile"], r["date"], r["status"], c["status"] if c else ""]
        for n in names:
            ch = checks.get(n)
            value = headline(ch) if ch else None
            row += [ch["status"] if ch else "", "" if value is None else f"{value:.6g}"]
        rows.append(row)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_output(dst) as tmp:
        tmp.write_text(buf.getvalue())


def _save(fig, dst: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_output(dst) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_status(reports: list[dict], dst: str | Path) -> None:
    """Stacked bars: how many scenes pass, warn and fail each check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    for r in reports:
        names += [c["name"] for c in r["checks"] if c["name"] not in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) + 2), 4))
    bottom = np.zeros(len(names))
    for status, colour in _STATUS_COLOURS.items():
        counts = np.array(
            [
                sum(c["name"] == n and c["status"] == status for r in reports for c in r["checks"])
                for n in names
            ],
            dtype=float,
        )
        ax.bar(names, counts, bottom=bottom, color=colour, label=status)
        bottom += counts
    ax.set_ylabel("scenes")
    ax.set_title(f"QC verdicts per check ({len(reports)} scenes)")
    ax.tick_params(axis="x", rotation=60)
    ax.legend()
    _save(fig, dst)


def plot_values(reports: list[dict], dst: str | Path) -> None:
    """Each numeric check's value over the scenes, with its warn (orange) / fail (red) lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[float]] = {}
    thresholds: dict[str, tuple] = {}
    for r in reports:
        for c in r["checks"]:
            value = headline(c)
            if value is None:
                continue
            series.setdefault(c["name"], []).append(value)
            thr = c.get("threshold") or {}
            warn, fail = _LINES.get(c["name"], ("warn", "fail"))
            if isinstance(thr, dict):
                thresholds[c["name"]] = (thr.get(warn), thr.get(fail))
    names = list(series) or ["(no numeric checks)"]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        values = series.get(name, [])
        ax.plot(np.arange(len(values)), values, "o", color="#1565c0")
        for level, colour in zip(thresholds.get(name, ()), ("#ffb300", "#e53935"), strict=False):
            if isinstance(level, (int, float)) and not isinstance(level, bool):
                ax.axhline(level, color=colour, linestyle="--", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("scene", fontsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, dst)


def plot_confusion(metrics: dict, dst: str | Path) -> None:
    """Held-out field confusion matrices of CatBoost and the baseline, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if metrics.get("field_report"):
        panels.append(("CatBoost", metrics["field_report"]))
    if metrics.get("baseline"):
        panels.append((metrics["baseline"]["name"], metrics["baseline"]["report"]))
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 4.5), squeeze=False
    )
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no held-out fields", ha="center", va="center")
        axes[0, 0].axis("off")
    for ax, (title, report) in zip(axes.ravel(), panels, strict=False):
        classes = report["confusion"]["classes"]
        matrix = np.asarray(report["confusion"]["matrix"])
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                color="white" if v > matrix.max() / 2 else "black",
            )
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        macro = report.get("macro_f1")
        ax.set_title(f"{title}\nmacro F1 {macro:.3f}" if macro is not None else title, fontsize=9)
    fig.tight_layout()
    _save(fig, dst)


def _classifier_html(m: dict) -> str:
    """CatBoost beside the baseline: headline scores and the per-class report."""

    def fmt(v):
        return "" if v is None else f"{v:.3f}"

    base = m.get("baseline") or {}
    rows = [
        ("macro F1 (fields)", m.get("field_macro_f1"), base.get("macro_f1")),
        ("weighted F1 (fields)", m.get("weighted_f1"), base.get("weighted_f1")),
    ]
    head = (
        f"<h2>Crop classifier</h2><p>split: {html.escape(json.dumps(m.get('split', {})))}; "
        f"fields train/test: {html.escape(json.dumps(m.get('n_fields', {})))}</p>"
        "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        f"<tr><th></th><th>CatBoost</th><th>{html.escape(base.get('name', 'baseline'))}</th></tr>"
        + "".join(f"<tr><td>{k}</td><td>{fmt(a)}</td><td>{fmt(b)}</td></tr>" for k, a, b in rows)
        + "</table>"
    )
    report = m.get("field_report") or {}
    base_report = (base.get("report") or {}).get("per_class", {})
    per_class = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{fmt(r['precision'])}</td><td>{fmt(r['recall'])}</td>"
        f"<td>{fmt(r['f1'])}</td><td>{r['support']}</td>"
        f"<td>{fmt(base_report.get(c, {}).get('f1'))}</td></tr>"
        for c, r in report.get("per_class", {}).items()
    )
    if per_class:
        head += (
            "<h3>Per class (held-out fields)</h3>"
            "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
            "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
            "<th>baseline F1</th></tr>" + per_class + "</table>"
        )
    return head


def _scene_tsv(reports: list[dict], names: list[str]) -> str:
    """The verdict table as TSV: tile, date, status and each check's status."""
    lines = ["\t".join(["tile", "date", "status", *names])]
    for r in reports:
        checks = {c["name"]: c for c in r["checks"]}
        statuses = (checks.get(n, {}).get("status", "") for n in names)
        lines.append("\t".join([r["tile"], r["date"], r["status"], *statuses]))
    return "\n".join(lines) + "\n"


def _cell(check: dict | None) -> str:
    """One check's status cell, coloured by status, its message shown on hover."""
    if check is None:
        return "<td></td>"
    return (
        f'<td style="background:{_COLOURS.get(check["status"], "#fff")}" '
        f'title="{html.escape(str(check.get("message", "")))}">'
        f"{html.escape(check['status'])}</td>"
    )


def _scene_row(r: dict, names: list[str]) -> str:
    """One scene's HTML row: tile, date, its status and a cell per check."""
    checks = {c["name"]: c for c in r["checks"]}
    cells = "".join(_cell(checks.get(n)) for n in names)
    return (
        f"<tr><td>{r['tile']}</td><td>{r['date']}</td>"
        f'<td style="background:{_COLOURS[r["status"]]}"><b>{r["status"]}</b></td>{cells}</tr>'
    )


def _page(reports: list[dict], names: list[str], counts: dict, metrics_html: str) -> str:
    """The summary HTML page: counts, the verdict table and the classifier section."""
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(_scene_row(r, names) for r in reports)
    return (
        "<html><head><meta charset='utf-8'><title>tilepipe QC summary</title></head><body>"
        f"<h1>QC summary</h1><p>{counts['pass']} pass, {counts['warn']} warn, "
        f"{counts['fail']} fail (hover a cell for the check's message)</p>"
        f"<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        f"<tr><th>tile</th><th>date</th><th>status</th>{head}</tr>{rows}</table>"
        f"{metrics_html}</body></html>\n"
    )


def _write_plots(reports: list[dict], metrics: dict | None, plots: dict[str, str]) -> None:
    """The requested ``{"status", "values", "confusion"}`` PNGs; absent keys are skipped."""
    if "status" in plots:
        plot_status(reports, plots["status"])
    if "values" in plots:
        plot_values(reports, plots["values"])
    if "confusion" in plots:
        plot_confusion(metrics or {}, plots["confusion"])


def qc_summary(
    qc_paths: list[str],
    out: str | Path,
    *,
    metrics: str | None = None,
    classification_qc: list[str] | None = None,
    summary_csv: str | Path | None = None,
    plots: dict[str, str] | None = None,
) -> dict:
    """Tabulate every scene's QC verdict (HTML for the report, TSV beside it); return counts.

    Optionally also writes ``summary_csv`` (scene + classification checks with values) and the
    ``plots`` ``{"status", "values", "confusion"}`` PNGs the report shows; all outputs are
    published together, so a failing plot leaves none of them.
    """
    reports = _load(qc_paths)
    class_reports = _load(classification_qc)
    names = sorted({c["name"] for r in reports for c in r["checks"]})
    counts = {s: sum(r["status"] == s for r in reports) for s in ("pass", "warn", "fail")}
    m = json.loads(Path(metrics).read_text()) if metrics else None
    page = _page(reports, names, counts, _classifier_html(m) if m is not None else "")
    out = Path(out)
    dests = {"html": out, "tsv": out.with_suffix(".tsv"), **(plots or {})}
    if summary_csv is not None:
        dests["csv"] = summary_csv
    with atomic_outputs(*dests.values()) as temps:  # every output appears, or none does
        tmp = dict(zip(dests, temps, strict=True))
        tmp["html"].write_text(page)
        tmp["tsv"].write_text(_scene_tsv(reports, names))
        if "csv" in tmp:
            write_summary_csv(reports, class_reports, tmp["csv"])
        _write_plots([*reports, *class_reports], m, {k: tmp[k] for k in plots or {}})
    return counts
