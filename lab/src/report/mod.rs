//! The HTML report: one self-contained file, the charts drawn with
//! plotters' SVG backend and written inline (`charts.rs`, and the
//! timeline in `timeline.rs`); this file writes the document: the
//! verdicts, the tables, the answer on cost.

mod charts;
mod timeline;

use std::fmt::Write as _;

use charts::{bar_chart, color, memory_against_n_chart, memory_chart, paired_chart};
use timeline::timeline_chart;

use crate::{
    cost::{self, bytes, copies_cell, processes_cell},
    figures::{fault_lines, memory_cell, skew_cell, LabFigures, StrategyFigures, LATE_SECONDS},
    HELP,
};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One line on what a strategy did, good or bad, as HTML.
fn verdict(strategy: &StrategyFigures) -> String {
    let Some(m) = &strategy.measured else {
        return escape(&strategy.skip_note());
    };
    let mut line = if m.lost_sessions + m.stale_reads + m.lost_increments == 0 {
        "<span class=\"ok\">&#10004; nothing lost</span>: no user logged out, no stale read, \
         no acknowledged increment gone"
            .to_owned()
    } else {
        format!(
            "<span class=\"lost\">&#10008; {} users logged out, {} stale reads, {} acknowledged \
             increments gone</span>",
            m.lost_sessions, m.stale_reads, m.lost_increments
        )
    };
    if m.failed_requests > 0 {
        let _ = write!(
            line,
            "; {} of {} requests failed (not acknowledged)",
            m.failed_requests, m.requests
        );
    }
    if let Some(after) = m.load_skew_after_return.filter(|skew| *skew >= 1.25) {
        let _ = write!(
            line,
            "; after node 0 came back the busiest server took {after:.2}&times; its share"
        );
    }
    line
}

fn html_table(figures: &LabFigures) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>strategy</th><th>requests</th><th>lost sessions</th>\
         <th>stale reads</th><th>lost increments</th><th>failed requests</th>\
         <th>load skew (all servers up / after node 0 came back)</th><th>sessions held per node</th>\
         <th>store bytes / request</th><th>p50 ok ms (2xx only)</th><th>p99 ok ms (2xx only)</th>\
         </tr></thead><tbody>",
    );
    for (i, s) in figures.strategies.iter().enumerate() {
        let swatch = color(i);
        let _ = write!(
            out,
            "<tr><td><span class=\"swatch\" style=\"background:rgb({},{},{})\"></span><b>{}</b> {}</td>",
            swatch.0,
            swatch.1,
            swatch.2,
            s.letter,
            escape(s.name)
        );
        match &s.measured {
            Some(m) => {
                let bad = |n: u64| {
                    if n > 0 {
                        format!("<td class=\"bad\">{n}</td>")
                    } else {
                        "<td class=\"good\">0</td>".to_owned()
                    }
                };
                let _ = write!(
                    out,
                    "<td>{}</td>{}{}{}<td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                    m.requests,
                    bad(m.lost_sessions),
                    bad(m.stale_reads),
                    bad(m.lost_increments),
                    m.failed_requests,
                    skew_cell(m),
                    escape(&memory_cell(m)),
                    m.store_bytes_per_request,
                    m.p50_ok_ms,
                    m.p99_ok_ms
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<td colspan=\"10\" class=\"skipped\">{}</td></tr>",
                    escape(&s.skip_note())
                );
            }
        }
    }
    out.push_str("</tbody></table>");
    out
}

/// The cost table and the answer on cost, as HTML.
fn cost_section(figures: &LabFigures) -> String {
    let mut out = String::from(
        "<h2>What each strategy costs</h2><table><thead><tr><th>strategy</th>\
         <th>processes (app + store)</th><th>session copies (app / stores)</th>\
         <th>memory of every copy</th><th>store bytes / request</th>\
         <th>store bytes / write</th><th>what it lost</th></tr></thead><tbody>",
    );
    for s in &figures.strategies {
        let _ = write!(out, "<tr><td><b>{}</b> {}</td>", s.letter, escape(s.name));
        match &s.measured {
            Some(m) => {
                let lost = if m.lost_sessions + m.stale_reads + m.lost_increments == 0 {
                    "<td class=\"good\">nothing</td>".to_owned()
                } else {
                    format!(
                        "<td class=\"bad\">{} sessions, {} stale reads, {} increments</td>",
                        m.lost_sessions, m.stale_reads, m.lost_increments
                    )
                };
                let _ = write!(
                    out,
                    "<td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td>{lost}</tr>",
                    processes_cell(m),
                    copies_cell(m),
                    bytes(m.memory_bytes),
                    m.store_bytes_per_request,
                    m.store_bytes_per_write,
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<td colspan=\"6\" class=\"skipped\">{}</td></tr>",
                    escape(&s.skip_note())
                );
            }
        }
    }
    let _ = write!(
        out,
        "</tbody></table><pre>{}</pre>",
        escape(cost::COST_LEGEND)
    );
    let answer = cost::cheap_backup(figures);
    if !answer.is_empty() {
        out.push_str("<h2>How do I keep the backup cheap?</h2><ul>");
        for paragraph in answer {
            let _ = write!(out, "<li>{}</li>", escape(&paragraph));
        }
        out.push_str("</ul>");
    }
    let _ = write!(
        out,
        "<div class=\"chart\">{}</div>",
        memory_against_n_chart(&figures.strategies)
    );
    out
}

/// The whole report, as one HTML document.
pub(crate) fn html(figures: &LabFigures, command: &str) -> String {
    let s = &figures.strategies;
    let charts = [
        bar_chart("Lost sessions: users logged out by the app", s, |m| {
            (m.lost_sessions as f64, m.lost_sessions.to_string())
        }),
        bar_chart(
            "Stale reads: a server answered from an older copy of the session",
            s,
            |m| (m.stale_reads as f64, m.stale_reads.to_string()),
        ),
        bar_chart(
            "Lost increments: acknowledged writes that are gone",
            s,
            |m| (m.lost_increments as f64, m.lost_increments.to_string()),
        ),
        bar_chart(
            "Failed requests: 5xx, connection errors, timeouts (not acknowledged)",
            s,
            |m| (m.failed_requests as f64, m.failed_requests.to_string()),
        ),
        timeline_chart(figures),
        paired_chart(
            "Load skew: busiest app server over the mean (dark: all servers up; light: after node 0 came back)",
            s,
            |m| {
                [
                    Some((
                        m.load_skew_all_up,
                        format!("{:.2} all servers up", m.load_skew_all_up),
                    )),
                    m.load_skew_after_return
                        .map(|skew| (skew, format!("{skew:.2} after the restart"))),
                ]
            },
            true,
        ),
        memory_chart(s),
        bar_chart(
            "Store traffic per request (bytes): the cluster's peer links (no SWIM datagrams), Redis in + out",
            s,
            |m| {
                (
                    m.store_bytes_per_request,
                    format!("{:.0} B", m.store_bytes_per_request),
                )
            },
        ),
        paired_chart(
            "Latency of the successful (2xx) answers only, through the balancer (ms): p50 ok dark, p99 ok light",
            s,
            |m| {
                [
                    Some((m.p50_ok_ms, format!("p50 ok {:.1}", m.p50_ok_ms))),
                    Some((m.p99_ok_ms, format!("p99 ok {:.1}", m.p99_ok_ms))),
                ]
            },
            false,
        ),
    ];
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>session-lab: how multi-server sessions break</title>\
         <style>\
         body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#202124}}\
         h1{{font-size:1.6em}} h2{{font-size:1.2em;margin-top:2em}}\
         table{{border-collapse:collapse;font-size:0.85em;width:100%}}\
         th,td{{border-bottom:1px solid #ddd;padding:4px 6px;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}\
         td.bad{{color:#d93025;font-weight:bold}} td.good{{color:#188038}} td.skipped{{color:#777;text-align:left}}\
         .swatch{{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}}\
         .chart{{margin:1.5em 0}} pre{{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:0.8em}}\
         dt{{font-weight:bold;margin-top:0.6em}}\
         ul.verdicts{{list-style:none;padding:0}}\
         ul.verdicts li{{border-left:6px solid;padding:4px 10px;margin:6px 0;background:#fafafa}}\
         .ok{{color:#188038;font-weight:bold}} .lost{{color:#d93025;font-weight:bold}}\
         </style></head><body>\n\
         <h1>session-lab: the three ways multi-server sessions break</h1>\n\
         <p>{} app servers per strategy, {} users each, {:.0} s of load (a request every {} ms \
         per user), all strategies side by side on one plan of faults. Produced by <code>{}</code> \
         in {:.0} s.</p>\n",
        figures.nodes,
        figures.users,
        figures.load_seconds,
        figures.pause_ms,
        escape(command),
        figures.elapsed_seconds,
    );
    out.push_str("<h2>What this run shows</h2><ul class=\"verdicts\">");
    for (i, strategy) in s.iter().enumerate() {
        let swatch = color(i);
        let _ = write!(
            out,
            "<li data-strategy=\"{}\" style=\"border-left-color:rgb({},{},{})\"><b>{} &nbsp;{}</b><br>{}</li>",
            strategy.key,
            swatch.0,
            swatch.1,
            swatch.2,
            strategy.letter,
            escape(strategy.name),
            verdict(strategy)
        );
    }
    let _ = write!(
        out,
        "</ul><h2>The faults</h2><p>Planned times, the same for every strategy; each \
         strategy applies them on its own clock, and where one took effect more than \
         {LATE_SECONDS} s late the line says when.</p><ul>",
    );
    for line in fault_lines(figures) {
        let _ = write!(out, "<li>{}</li>", escape(line.trim_start()));
    }
    out.push_str("</ul><h2>The figures</h2>");
    out.push_str(&html_table(figures));
    for chart in charts {
        let _ = write!(out, "<div class=\"chart\">{chart}</div>");
    }
    out.push_str(&cost_section(figures));
    out.push_str("<h2>The strategies</h2><dl>");
    for strategy in s {
        let _ = write!(
            out,
            "<dt>{} &nbsp;{}</dt><dd>{} {}</dd>",
            strategy.letter,
            escape(strategy.name),
            escape(strategy.setup),
            escape(strategy.expectation)
        );
    }
    let _ = writeln!(
        out,
        "</dl><h2>How each figure is measured</h2><pre>{}</pre></body></html>",
        escape(HELP)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::figures_with;

    #[test]
    fn a_skipped_strategy_shows_its_own_reason_in_every_chart() {
        let report = html(&figures_with(Vec::new()), "session-lab --no-redis");
        assert!(!report.contains("no redis-server"), "a made-up reason");
        // The verdict, the table and the cost table, and each of the nine
        // charts (five bar charts, two paired ones, the memory chart, the
        // timeline); the chart against N shows only what ran.
        assert_eq!(report.matches("skipped: --no-redis").count(), 3 + 9);
    }
}
