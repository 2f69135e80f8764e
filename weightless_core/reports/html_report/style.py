"""The page's stylesheet: light and dark, narrow screens, no web fonts; also served by the
dashboard, whose report pages embed the same sections."""

CSS = """
:root{--bg:#fff;--fg:#1b1f24;--muted:#59636e;--line:#d0d7de;--card:#f6f8fa;--accent:#1f5fbf;
--grid:#e3e7eb;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--fg:#e6edf3;--muted:#9aa6b2;
--line:#30363d;--card:#161b22;--accent:#6ea8fe;--grid:#262c34}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0 .4rem;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.8rem 0 .6rem;border-bottom:1px solid var(--line)}
.meta,.knobs{display:flex;flex-wrap:wrap;gap:.3rem 1rem;margin:.3rem 0;color:var(--muted)}
.meta b,.knobs b{color:var(--fg)}
details{margin:.5rem 0}summary{cursor:pointer;color:var(--accent)}
.note{border-left:3px solid var(--accent);padding:.2rem .7rem;margin:.7rem 0}
dl.settings{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.5rem 0;
font-size:.9rem}
dl.settings dt{color:var(--muted)}dl.settings dd{margin:0;overflow-wrap:anywhere}
dl.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:.7rem;
margin:0}
.fig{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem}
.fig dt{color:var(--muted);font-size:.85rem}.fig dd{margin:0}
.big{font-size:1.45rem;font-weight:600;display:block}
.steps{font-size:1rem;font-weight:600}.step{white-space:nowrap}
.step small{font-weight:400;color:var(--muted)}
.detail{display:block;font-size:.85rem;color:var(--muted)}
.muted{color:var(--muted);font-size:.9rem}
.table-wrap{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%;margin:.5rem 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.9rem}
caption{text-align:left;color:var(--muted);padding:.2rem 0}
th,td{padding:.3rem .6rem;border-bottom:1px solid var(--line);white-space:nowrap}
td{text-align:right}th{text-align:left;font-weight:600}
table.layers th[scope=row]{position:sticky;left:0;background:var(--bg)}
table.compare th{white-space:normal;min-width:9rem}
tr.plain td,tr.plain th{color:var(--muted)}
.chart{margin:.5rem 0;overflow-x:auto}
.chart svg{display:block;width:100%;max-width:760px;height:auto}
.chart figcaption{color:var(--muted);font-size:.85rem;margin-top:.3rem}
svg text{fill:var(--fg);font-size:13px;font-family:inherit}
svg .tick,svg .axis-label{fill:var(--muted);font-size:12px}
svg .group{font-weight:600}
svg .grid{stroke:var(--grid);stroke-width:1}svg .axis{stroke:var(--muted);stroke-width:1}
svg .bar{stroke:var(--fg);stroke-width:1}
svg .orig{fill:var(--bg)}svg .dc{fill:url(#wl-hatch)}svg .wl{fill:var(--accent)}
svg .hatch-bg{fill:var(--bg)}svg .hatch-line{stroke:var(--fg);stroke-width:2.5}
svg .line{fill:none;stroke:var(--accent);stroke-width:2}
svg .point{fill:var(--bg);stroke:var(--accent);stroke-width:2}
footer{margin:2rem 0 1rem}
@media (min-width:700px){.fig.wide{grid-column:span 2}}
@media (max-width:600px){main{padding:.6rem}h1{font-size:1.25rem}.big{font-size:1.2rem}
svg text{font-size:16px}svg .tick,svg .axis-label{font-size:14px}}
""".strip()
