"""The pieces of the report page: sections, tables, embedded figures, warnings, and the browser check."""

from __future__ import annotations

import base64
import html

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:.5em 0}.missing{color:#a40}
.warning{background:#fff3cd;border-left:4px solid #d9a400;padding:.4em .8em}td.id{text-align:left;word-break:break-all}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"""
# Every figure must decode: the test opens the page in a browser and reads these attributes back.
CHECK = """<script>window.addEventListener('load',()=>{const i=[...document.images];
document.body.dataset.images=i.length;document.body.dataset.broken=i.filter(x=>!x.complete||!x.naturalWidth).length;});</script>"""


def figure(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def table(rows: list[dict], columns: list[str], text_columns: tuple[str, ...] = ()) -> str:
    """An HTML table; `text_columns` are left-aligned and wrap (ids are shown whole, never cut)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=id' if c in text_columns else ''}>{html.escape(cell(row.get(c)))}</td>"
            for c in columns
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def columns_of(rows: list[dict], first: str) -> list[str]:
    """`first`, then every other key the rows have, in the order they first appear."""
    return [first, *dict.fromkeys(k for row in rows for k in row if k != first)]


def section(title: str, *parts: str) -> str:
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def warning(text: str) -> str:
    return f"<p class='warning'>warning: {html.escape(text)}</p>"


def page(title: str, sections: list[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}{CHECK}</body></html>"
    )
