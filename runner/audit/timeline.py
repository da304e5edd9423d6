"""The timeline picture of the auditor's report: one session on a time axis, inline SVG.

Lanes, top to bottom: session events (connections, plan submitted, closed) as grey
ticks; approvals (plan verdicts, grants) as purple diamonds labelled with the
approver; statements that ran as bars from the moment the gateway recorded them
for their recorded duration (blue, green when on a grant, orange when they failed);
refused statements in red, labelled. Every text in it is escaped; each mark has a
``<title>`` with its line of the replay (a tooltip, no script).
"""

from __future__ import annotations

import html
from typing import Any

from runner.audit.replay import SessionView, sql_headline


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_W, _LEFT, _RIGHT, _LANE = 720, 72, 34, 30
_LANES = ("session", "approvals", "statements", "refused")
MAX_MARKS = 2000
_LABEL_GAP = 190  # px: about one 36-character label
_COLOURS = {"ran": "#2b6cb0", "granted": "#2f855a", "failed": "#dd6b20", "refused": "#c53030"}


def _nice_step(span: float) -> float:
    raw = span / 6
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    while magnitude > raw:
        magnitude /= 10
    for factor in (1, 2, 5, 10):
        if magnitude * factor >= raw:
            return magnitude * factor
    return magnitude * 10


def _tick_label(seconds: float, step: float) -> str:
    if step < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.0f} s" if step >= 1 else f"{seconds:.1f} s"


def timeline_svg(view: SessionView) -> str:
    """The session on a time axis: statements as bars (start, duration), refusals in
    red, approvals as diamonds, session events as ticks. Inline SVG, escaped."""
    start = view.start()
    events = [ev for ev in view.events() if ev.ts is not None]
    if start is None or not events:
        return "<p>No timestamps to draw.</p>"
    # A page stays light enough to open and print: past MAX_MARKS the rest are left
    # out of the picture (and said so); the tables below still list every statement.
    left_out = max(len(events) - MAX_MARKS, 0)
    events = events[:MAX_MARKS]

    def end(ev: Any) -> float:
        duration = ev.record.get("duration_ms")
        ms = float(duration) if isinstance(duration, int | float) else 0.0
        return float((ev.ts - start).total_seconds()) + ms / 1000

    span = max(max(end(ev) for ev in events), 0.001)
    plot = _W - _LEFT - _RIGHT
    top = 34

    def x(seconds: float) -> float:
        return _LEFT + seconds / span * plot

    lane_y = {name: top + i * _LANE for i, name in enumerate(_LANES)}
    height = top + len(_LANES) * _LANE + 58
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" width="100%" '
        f'role="img" aria-label="Timeline of the session" font-family="sans-serif" font-size="10">'
    ]
    for name, y in lane_y.items():
        parts.append(f'<text x="4" y="{y + 18}" fill="#333">{e(name)}</text>')
        parts.append(
            f'<line x1="{_LEFT}" y1="{y + 14}" x2="{_W - _RIGHT}" y2="{y + 14}" stroke="#e2e8f0"/>'
        )
    axis_y = top + len(_LANES) * _LANE + 4
    parts.append(
        f'<line x1="{_LEFT}" y1="{axis_y}" x2="{_W - _RIGHT}" y2="{axis_y}" stroke="#555"/>'
    )
    step = _nice_step(span)
    tick = 0.0
    while tick <= span * 1.0001:
        tx = x(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{axis_y + 4}" stroke="#edf2f7"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#333">'
            f"+{e(_tick_label(tick, step))}</text>"
        )
        tick += step
    parts.append(
        f'<text x="{_LEFT}" y="{axis_y + 30}" fill="#555">time from '
        f"{e(start.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3])} UTC</text>"
    )
    labels: list[tuple[float, int, str, str]] = []  # x, lane top, text, colour
    for ev in events:
        at = float((ev.ts - start).total_seconds())  # type: ignore[operator]
        title = f"<title>{e(ev.label)}: {e(ev.text)}</title>"
        if ev.kind in ("statement", "refused"):
            y = lane_y["refused" if ev.kind == "refused" else "statements"]
            colour = _COLOURS["refused"]
            if ev.kind == "statement":
                failed = ev.record.get("status") != "completed"
                granted = ev.record.get("decision") == "approved"
                colour = _COLOURS["failed" if failed else "granted" if granted else "ran"]
            width = max((end(ev) - at) / span * plot, 2.5)
            parts.append(
                f'<rect x="{x(at):.1f}" y="{y + 6}" width="{width:.1f}" height="16" '
                f'fill="{colour}" fill-opacity="0.85">{title}</rect>'
            )
            if ev.kind == "refused" or ev.record.get("decision") == "approved":
                labels.append((x(at), y, sql_headline(str(ev.record.get("text", "")), 36), colour))
        elif ev.kind in ("approval", "grant"):
            y = lane_y["approvals"] + 14
            cx = x(at)
            parts.append(
                f'<path d="M{cx:.1f},{y - 8} l7,8 l-7,8 l-7,-8 z" fill="#6b46c1">{title}</path>'
            )
            if ev.kind == "grant":
                labels.append((cx, lane_y["approvals"], str(ev.record.get("approver")), "#6b46c1"))
        else:
            y = lane_y["session"]
            parts.append(
                f'<rect x="{x(at) - 1:.1f}" y="{y + 6}" width="2" height="16" fill="#718096">'
                f"{title}</rect>"
            )
    parts += _placed_labels(labels)
    legend_y = height - 10
    legend = [
        ("ran", "ran"),
        ("granted", "ran on a grant"),
        ("failed", "failed / not completed"),
        ("refused", "refused"),
    ]
    lx = _LEFT
    for key, text in legend:
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{_COLOURS[key]}"/>'
        )
        parts.append(f'<text x="{lx + 14}" y="{legend_y}" fill="#333">{e(text)}</text>')
        lx += 24 + 6 * len(text)
    parts.append(f'<path d="M{lx + 5},{legend_y - 10} l5,6 l-5,6 l-5,-6 z" fill="#6b46c1"/>')
    parts.append(f'<text x="{lx + 14}" y="{legend_y}" fill="#333">approval</text>')
    if left_out:
        parts.append(
            f'<text x="{_W - _RIGHT}" y="{legend_y}" text-anchor="end" fill="#c53030">'
            f"{left_out} later event(s) not drawn</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _placed_labels(labels: list[tuple[float, int, str, str]]) -> list[str]:
    """Labels above their marks, right-aligned near the right edge; one that would
    overlap the previous label of its lane is left out (the mark keeps its tooltip,
    the tables below list every statement)."""
    placed: list[str] = []
    last: dict[int, float] = {}
    for at, lane_top, text, colour in labels:
        if lane_top in last and abs(at - last[lane_top]) < _LABEL_GAP:
            continue
        last[lane_top] = at
        anchor = "end" if at > _W - 180 else "start"
        placed.append(
            f'<text x="{at + (-3 if anchor == "end" else 3):.1f}" y="{lane_top + 4}" '
            f'text-anchor="{anchor}" fill="{colour}" font-weight="bold">{e(text)}</text>'
        )
    return placed


__all__ = ["timeline_svg"]
