extension Console {
    /// The one stylesheet, served as /console/style.css (the pages have no inline style, so the
    /// Content-Security-Policy can forbid it).
    static let css = """
        :root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --line: #d0d7de; --muted: #57606a; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; }
        header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.5em; background: #24292f;
                 color: #fff; }
        header a { color: #d0d7de; text-decoration: none; margin-right: 1em; }
        header a.current, header a:hover { color: #fff; text-decoration: underline; }
        .brand { font-weight: 700; }
        .who { margin-left: auto; color: #d0d7de; }
        main { padding: 1em 1.5em 3em; max-width: 1400px; }
        h1 { font-size: 1.5em; margin: .3em 0 .6em; word-break: break-all; }
        h2 { font-size: 1.1em; margin: 1.6em 0 .5em; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: #f6f8fa; font-weight: 600; }
        td { overflow-wrap: break-word; }
        .status, button { white-space: nowrap; }
        .mono, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
        pre { background: #f6f8fa; border: 1px solid var(--line); padding: .6em; white-space: pre-wrap; }
        small, .hint, .empty, .meta { color: var(--muted); }
        .cards { display: flex; flex-wrap: wrap; gap: .8em; }
        .card { border: 1px solid var(--line); border-radius: 6px; padding: .6em 1em; min-width: 10em; }
        .card .value { font-size: 1.5em; font-weight: 600; }
        .card .label { color: var(--muted); }
        .status { display: inline-block; padding: 0 .5em; border-radius: 1em; border: 1px solid var(--line); }
        .status.delivered, .status.closed, .status.running { color: var(--ok); border-color: var(--ok); }
        .status.failed, .status.open, .status.disabled, .status.cancelled { color: var(--bad);
                                                                            border-color: var(--bad); }
        .status.pending, .status.half_open, .status.paused { color: var(--warn); border-color: var(--warn); }
        .badge { margin-left: .5em; padding: 0 .4em; background: var(--warn); border-radius: 3px; color: #fff; }
        .flash { padding: .6em 1em; border-radius: 6px; border: 1px solid var(--line); }
        .flash.ok, .verdict.ok { background: #dafbe1; border-color: var(--ok); }
        .flash.error, .verdict.error { background: #ffebe9; border-color: var(--bad); }
        .verdict { padding: .6em 1em; border-radius: 6px; border: 1px solid var(--warn); background: #fff8c5;
                   font-size: 1.05em; }
        form.inline { display: inline-flex; gap: .4em; align-items: center; margin: 0 .4em .4em 0; }
        form.search { display: flex; flex-wrap: wrap; gap: .6em; align-items: flex-end; margin-bottom: 1em; }
        form.search label, form.login label { display: flex; flex-direction: column; font-size: .9em; }
        form.search label.check { flex-direction: row; gap: .3em; align-items: center; }
        form.login { display: flex; gap: .6em; align-items: flex-end; }
        input, select, button { font: inherit; padding: .3em .5em; }
        button { border: 1px solid var(--line); border-radius: 6px; background: #f6f8fa; cursor: pointer; }
        button.danger { color: var(--bad); }
        button.link { border: none; background: none; color: #d0d7de; text-decoration: underline; padding: 0; }
        .actions { margin: 1em 0; }
        dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1.2em; }
        dl.facts dt { color: var(--muted); }
        dl.facts dd { margin: 0; }
        ol.timeline { list-style: none; padding-left: 0; border-left: 3px solid var(--line); margin-left: .5em; }
        ol.timeline li { margin: 0 0 1em; padding-left: 1em; position: relative; }
        ol.timeline li::before { content: ""; position: absolute; left: -8px; top: .35em; width: 13px; height: 13px;
                                 border-radius: 50%; background: var(--bad); }
        ol.timeline li.ok::before { background: var(--ok); }
        ol.timeline .error { color: var(--bad); }
        pre.excerpt { margin: .3em 0 0; max-height: 8em; overflow: auto; }
        svg.chart { width: 100%; max-width: 720px; height: auto; border: 1px solid var(--line); }
        svg.chart rect.ok, .swatch.ok { fill: var(--ok); color: var(--ok); }
        svg.chart rect.failed, .swatch.failed { fill: var(--bad); color: var(--bad); }
        svg.chart .axis { stroke: var(--muted); }
        svg.chart .tick { font-size: 10px; fill: var(--muted); }
        .legend { color: var(--muted); }
        """
}
