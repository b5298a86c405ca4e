//! The dashboard's stylesheet, served inline (no external assets).

pub const STYLESHEET: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
.topbar { display: flex; gap: 1.5rem; align-items: center; padding: .6rem 1.5rem; background: #1d2330; }
.topbar a { color: #e8ecf3; text-decoration: none; }
.brand { font-weight: 700; font-size: 1.1rem; }
.content { padding: 1rem 1.5rem; max-width: 1200px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6eb; font-size: .9rem; vertical-align: top; }
th { background: #eef0f4; }
.mono { font-family: ui-monospace, monospace; font-size: .85rem; }
.muted { color: #6b7385; }
.error { color: #b42318; }
.empty { padding: 1rem; color: #6b7385; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: .7rem; font-size: .8rem; background: #e3e6eb; }
.status-active { background: #d1e9ff; color: #175cd3; }
.status-ended { background: #d1fadf; color: #067647; }
.status-crashed { background: #fee4e2; color: #b42318; }
.status-hung { background: #fef0c7; color: #b54708; }
.status-lost { background: #eaecf0; color: #344054; }
.level-warning .badge, .badge.level-warning { background: #fef0c7; color: #b54708; }
.level-error .badge, .badge.level-error, .badge.level-critical { background: #fee4e2; color: #b42318; }
.filters { display: flex; gap: 1rem; margin: .5rem 0 1rem; align-items: end; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
.facts dt { color: #6b7385; }
.facts dd { margin: 0; }
pre.state { background: #fff; padding: .8rem; border: 1px solid #e3e6eb; overflow: auto; }
.chart { background: #fff; border: 1px solid #e3e6eb; margin: 0 0 1rem; padding: .5rem; }
.chart .axis { stroke: #c5cad3; }
.chart .series { fill: none; stroke: #175cd3; stroke-width: 2; }
.chart .dot { fill: #175cd3; }
.chart .tick { font-size: 10px; fill: #6b7385; }
"#;
