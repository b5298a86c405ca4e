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
.chart .bar { fill: #175cd3; }
.topbar nav { display: flex; gap: 1rem; }
.filters { flex-direction: column; align-items: stretch; background: #fff; padding: .6rem; border: 1px solid #e3e6eb; }
.filters .row { display: flex; flex-wrap: wrap; gap: .8rem; align-items: end; }
.filters label { font-size: .85rem; color: #344054; }
.pager { margin: .8rem 0; }
.rate.bad { color: #b42318; font-weight: 600; }
.last-moments { border-left: 4px solid #b42318; padding-left: 1rem; margin: 1rem 0; background: #fff7f6; }
.timeline { list-style: none; padding: 0; margin: 0; }
.timeline .event { padding: .3rem .5rem; border-bottom: 1px solid #e3e6eb; background: #fff; }
.timeline .time { color: #6b7385; font-size: .85rem; margin-right: .5rem; }
.timeline .badge { margin-right: .5rem; }
.timeline details { margin: .2rem 0 .2rem 1.5rem; }
.timeline pre { background: #f6f7f9; padding: .4rem; overflow: auto; margin: .2rem 0; }
.exception summary { color: #b42318; }
.tag { display: inline-block; padding: 0 .35rem; border-radius: .6rem; background: #eef; font-size: .8rem; }
.frames { margin: .2rem 0; font-size: .85rem; }
.json-tree { background: #fff; border: 1px solid #e3e6eb; padding: .5rem; font-family: ui-monospace, monospace; font-size: .85rem; }
.json-node, .json-leaf { margin-left: 1rem; }
.json-tree > .json-node { margin-left: 0; }
.json-key { color: #6941c6; }
.json-value { color: #067647; }
.history label { display: block; margin: .3rem 0; }
.history input[type=range] { width: 40%; vertical-align: middle; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
pre.diff { background: #fff; border: 1px solid #e3e6eb; padding: .5rem; overflow: auto; }
"#;
