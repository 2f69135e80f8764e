"""One compression run as a single self-contained HTML page: figures, per-layer table, charts.

The page is meant to be mailed, attached to a ticket or archived next to the model, so it loads
nothing from anywhere: inline CSS (``style``), charts drawn as inline SVG (``charts``), no
scripts. Input is a ``Report`` or a report JSON stored by an older version, so every field is
read defensively (``values``) and a missing one shows as "-". Every string from the report is
escaped (layer names come from user models), and the same report always gives the same page,
so pages can be tested and diffed.
"""

from __future__ import annotations

from weightless_core.reports.html_report.page import (
    DEFAULT_TITLE,
    render_html,
    render_sections,
    write_html,
)
from weightless_core.reports.html_report.style import CSS

__all__ = ["CSS", "DEFAULT_TITLE", "render_html", "render_sections", "write_html"]
