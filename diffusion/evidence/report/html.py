"""The report as one self-contained HTML page (:func:`build_report_html`): inline CSS, base64 images, no script."""

from __future__ import annotations

import base64
import html
from typing import Sequence

from .document import Block, Code, Figure, FigureGrid, Inline, Paragraph, Report, Table

CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #fbfbf9; color: #1d1d1b;
  font: 16px/1.55 "Iowan Old Style", "Palatino Linotype", Palatino, Georgia, serif; }
main { max-width: 46rem; margin: 0 auto; padding: 2.5rem 1.25rem 3rem; }
h1 { font-size: 1.9rem; line-height: 1.2; margin: 0 0 .4rem; font-weight: 600; }
h2 { font-size: 1.2rem; margin: 2.4rem 0 .6rem; padding-bottom: .2rem; border-bottom: 1px solid #d8d8d2; font-weight: 600; }
p { margin: .6rem 0; }
.lead { color: #4a4a46; font-size: 1.05rem; }
code { font: .82em/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; overflow-wrap: anywhere;
  background: #efefea; padding: .05em .3em; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0 1rem; font-size: .92rem; }
th, td { text-align: left; vertical-align: top; padding: .32rem .6rem .32rem 0; border-bottom: 1px solid #e4e4df; }
th { font-weight: 600; white-space: nowrap; width: 11rem; color: #3a3a37; }
.note { color: #4a4a46; border-left: 3px solid #b9b9b2; padding: .1rem 0 .1rem .8rem; }
.warning { border-left: 3px solid #8a5a00; padding: .1rem 0 .1rem .8rem; background: #f6efe1; }
.verdict { font-size: 1.15rem; font-weight: 600; }
figure { margin: 1rem 0; break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; background: #fff; }
figcaption { font-size: .85rem; color: #55554f; margin-top: .3rem; }
.sheets { display: grid; grid-template-columns: repeat(auto-fill, minmax(13.5rem, 1fr)); gap: .8rem 1rem; }
.sheets figure { margin: 0; }
footer { margin-top: 3rem; padding-top: .8rem; border-top: 1px solid #d8d8d2; font-size: .8rem; color: #55554f; }
footer p { margin: .2rem 0; }
@media print {
  body { background: #fff; font-size: 11pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  code { background: none; padding: 0; }
  .warning { background: none; }
}
@page { margin: 18mm 16mm; }
""".strip()


def _html_inline(parts: Sequence[Inline]) -> str:
    return "".join(
        f"<code>{html.escape(p.text)}</code>" if isinstance(p, Code) else html.escape(p) for p in parts
    )


def _html_figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{fig.width}" height="{fig.height}" '
        f'alt="{html.escape(fig.alt)}"><figcaption>{html.escape(fig.caption)}</figcaption></figure>'
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        classes = {"alert": "verdict warning"}.get(block.tone, block.tone)
        cls = f' class="{classes}"' if classes else ""
        return f"<p{cls}>{_html_inline(block.parts)}</p>"
    if isinstance(block, Table):
        rows = "\n".join(
            f"<tr><th scope=\"row\">{html.escape(label)}</th><td>{_html_inline(value)}</td></tr>" for label, value in block.rows
        )
        return f"<table>\n{rows}\n</table>"
    if isinstance(block, Figure):
        return _html_figure(block)
    if isinstance(block, FigureGrid):
        return '<div class="sheets">\n' + "\n".join(_html_figure(f) for f in block.figures) + "\n</div>"
    raise TypeError(f"unknown block {type(block).__name__}")


def build_report_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, base64 images, no script)."""
    body = [f"<h1>{html.escape(report.title)}</h1>", f'<p class="lead">{html.escape(report.lead)}</p>']
    for section in report.sections:
        body.append(f"<section>\n<h2>{html.escape(section.title)}</h2>")
        body.extend(_html_block(b) for b in section.blocks)
        body.append("</section>")
    footer = "\n".join(f"<p>{_html_inline(line)}</p>" for line in report.footer)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(report.title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + f"\n<footer>\n{footer}\n</footer>\n</main>\n</body>\n</html>\n"
    )
