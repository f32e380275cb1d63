//! The HTML report: one self-contained file, the charts drawn with
//! plotters' SVG backend and written inline.

use std::fmt::Write as _;

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::{
    cost::{self, bytes, copies_cell, processes_cell},
    figures::{
        fault_lines, memory_cell, skew_cell, LabFigures, Measured, StrategyFigures, LATE_SECONDS,
    },
    schedule::Action,
    HELP,
};

const WIDTH: u32 = 900;
const LABEL_WIDTH: i32 = 300;
const BAR_AREA: i32 = 480;
const ROW: i32 = 30;
const TOP: i32 = 58;

/// One color per strategy, in the table's order, so a strategy looks the
/// same in every chart.
const COLORS: [RGBColor; 10] = [
    RGBColor(232, 113, 10),
    RGBColor(217, 48, 37),
    RGBColor(240, 128, 128),
    RGBColor(26, 115, 232),
    RGBColor(125, 170, 240),
    RGBColor(147, 52, 230),
    RGBColor(24, 128, 56),
    RGBColor(0, 150, 136),
    RGBColor(121, 85, 72),
    RGBColor(96, 125, 139),
];
const GREY: RGBColor = RGBColor(120, 120, 120);
const LIGHT: RGBColor = RGBColor(225, 225, 225);
const FAILED: RGBColor = RGBColor(249, 171, 0);
const LOST: RGBColor = RGBColor(217, 48, 37);
const STALE: RGBColor = RGBColor(147, 52, 230);
/// The background of a strip while something is down.
const SHADE: RGBColor = RGBColor(241, 243, 244);

fn color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

fn font_at(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    font(size).pos(Pos::new(h, v))
}

fn px(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// What every chart draws on.
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Starts a strategy's row in a chart whose bars begin at `axis`: its
/// `label` right-aligned before the axis, at height `y`. For a strategy
/// that did not run it also writes why after the axis, in grey, and
/// returns `None`; else what the strategy measured, for the row's bars.
fn row<'a>(
    root: &Area<'_>,
    strategy: &'a StrategyFigures,
    label: String,
    axis: i32,
    y: i32,
) -> Option<&'a Measured> {
    let _ = root.draw(&Text::new(
        label,
        (axis - 8, y),
        font_at(13, HPos::Right, VPos::Center),
    ));
    if strategy.measured.is_none() {
        let _ = root.draw(&Text::new(
            strategy.skip_note(),
            (axis + 6, y),
            font_at(12, HPos::Left, VPos::Center).color(&GREY),
        ));
    }
    strategy.measured.as_ref()
}

/// `a  local memory, sticky balancer`: a strategy's label in the charts.
fn long_label(strategy: &StrategyFigures) -> String {
    format!("{}  {}", strategy.letter, strategy.name)
}

/// Draws into a new SVG of `height` pixels and returns its text. Drawing
/// into a string cannot fail for want of a file, so the backend's errors
/// (none in practice) are ignored.
fn svg(height: i32, draw: impl FnOnce(&Area<'_>)) -> String {
    let mut out = String::new();
    {
        let height = u32::try_from(height.max(1)).unwrap_or(1);
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        draw(&root);
        let _ = root.present();
    }
    out
}

/// A horizontal bar per strategy; `value` gives the bar's length and its
/// label.
fn bar_chart(
    title: &str,
    strategies: &[StrategyFigures],
    value: impl Fn(&Measured) -> (f64, String),
) -> String {
    let max = strategies
        .iter()
        .filter_map(|s| s.measured.as_ref())
        .map(|m| value(m).0)
        .fold(0.0_f64, f64::max);
    let height = TOP + ROW * px(strategies.len()) + 12;
    svg(height, |root| {
        let _ = root.draw(&Text::new(title.to_owned(), (10, 12), font(17)));
        let _ = root.draw(&PathElement::new(
            vec![(LABEL_WIDTH, TOP - 8), (LABEL_WIDTH, height - 8)],
            GREY.stroke_width(1),
        ));
        for (i, strategy) in strategies.iter().enumerate() {
            let y = TOP + ROW * px(i);
            let Some(measured) = row(root, strategy, long_label(strategy), LABEL_WIDTH, y + 9)
            else {
                continue;
            };
            let (x, text) = value(measured);
            let length = if max > 0.0 {
                ((x / max) * f64::from(BAR_AREA)) as i32
            } else {
                0
            };
            if length > 0 {
                let _ = root.draw(&Rectangle::new(
                    [(LABEL_WIDTH, y), (LABEL_WIDTH + length, y + 18)],
                    color(i).filled(),
                ));
            }
            let _ = root.draw(&Text::new(
                text,
                (LABEL_WIDTH + length + 6, y + 9),
                font_at(13, HPos::Left, VPos::Center),
            ));
        }
    })
}

/// Sessions each node holds: one thin bar per node, or one bar for the
/// shared Redis server(s).
fn memory_chart(strategies: &[StrategyFigures]) -> String {
    let max = strategies
        .iter()
        .filter_map(|s| s.measured.as_ref())
        .flat_map(|m| {
            m.sessions_per_node
                .iter()
                .chain(m.shared_store_keys.iter().flatten())
                .copied()
        })
        .max()
        .unwrap_or(0);
    let nodes = strategies
        .iter()
        .filter_map(|s| s.measured.as_ref())
        .map(|m| m.sessions_per_node.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let thin = 11;
    let group = px(nodes) * thin + 14;
    let height = TOP + group * px(strategies.len()) + 12;
    let length = |x: u64| {
        if max == 0 {
            0
        } else {
            ((x as f64 / max as f64) * f64::from(BAR_AREA)) as i32
        }
    };
    svg(height, |root| {
        let _ = root.draw(&Text::new(
            "Sessions held in each app server's memory at the end (Redis: keys in the shared store)",
            (10, 12),
            font(17),
        ));
        for (i, strategy) in strategies.iter().enumerate() {
            let y = TOP + group * px(i);
            let label = long_label(strategy);
            let Some(measured) = row(root, strategy, label, LABEL_WIDTH, y + group / 2 - 7) else {
                continue;
            };
            if let Some(keys) = &measured.shared_store_keys {
                let total: u64 = keys.iter().sum();
                let end = LABEL_WIDTH + length(total);
                let _ = root.draw(&Rectangle::new(
                    [(LABEL_WIDTH, y), (end, y + group - 16)],
                    color(i).mix(0.35).filled(),
                ));
                let text = match keys.as_slice() {
                    [one] => format!("0 per node; the shared Redis holds {one} keys"),
                    many => format!(
                        "0 per node; the Redis servers hold {} keys",
                        many.iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(" + ")
                    ),
                };
                let _ = root.draw(&Text::new(
                    text,
                    (end + 6, y + group / 2 - 7),
                    font_at(12, HPos::Left, VPos::Center),
                ));
                continue;
            }
            for (n, held) in measured.sessions_per_node.iter().enumerate() {
                let top = y + thin * px(n);
                let end = LABEL_WIDTH + length(*held);
                let _ = root.draw(&Rectangle::new(
                    [
                        (LABEL_WIDTH, top),
                        (end.max(LABEL_WIDTH + 1), top + thin - 3),
                    ],
                    color(i).filled(),
                ));
                let _ = root.draw(&Text::new(
                    format!("node {n}: {held}"),
                    (end + 6, top + thin / 2 - 2),
                    font_at(10, HPos::Left, VPos::Center),
                ));
            }
        }
    })
}

/// One bar of a chart: its length, in the chart's unit, and its label.
type Bar = (f64, String);

/// Two bars per strategy, a dark and a light one: `values` gives each
/// bar (`None` for a bar with nothing to show).
fn paired_chart(
    title: &str,
    strategies: &[StrategyFigures],
    values: impl Fn(&Measured) -> [Option<Bar>; 2],
    mark_one: bool,
) -> String {
    let max = strategies
        .iter()
        .filter_map(|s| s.measured.as_ref())
        .flat_map(&values)
        .flatten()
        .map(|(x, _)| x)
        .fold(0.0_f64, f64::max);
    let group = 34;
    let height = TOP + group * px(strategies.len()) + 12;
    let length = |x: f64| {
        if max > 0.0 {
            ((x / max) * f64::from(BAR_AREA)) as i32
        } else {
            0
        }
    };
    svg(height, |root| {
        let _ = root.draw(&Text::new(title.to_owned(), (10, 12), font(17)));
        if mark_one && max >= 1.0 {
            let one = LABEL_WIDTH + length(1.0);
            let _ = root.draw(&PathElement::new(
                vec![(one, TOP - 10), (one, height - 8)],
                GREY.stroke_width(1),
            ));
            let _ = root.draw(&Text::new(
                "1.00 = even",
                (one + 3, TOP - 12),
                font_at(10, HPos::Left, VPos::Center).color(&GREY),
            ));
        }
        for (i, strategy) in strategies.iter().enumerate() {
            let y = TOP + group * px(i);
            let Some(measured) = row(root, strategy, long_label(strategy), LABEL_WIDTH, y + 10)
            else {
                continue;
            };
            for (bar, (value, shade)) in values(measured).into_iter().zip([1.0, 0.4]).enumerate() {
                let Some((value, text)) = value else { continue };
                let top = y + 11 * px(bar);
                let end = LABEL_WIDTH + length(value).max(1);
                let _ = root.draw(&Rectangle::new(
                    [(LABEL_WIDTH, top), (end, top + 9)],
                    color(i).mix(shade).filled(),
                ));
                let _ = root.draw(&Text::new(
                    text,
                    (end + 6, top + 4),
                    font_at(11, HPos::Left, VPos::Center),
                ));
            }
        }
    })
}

/// Per strategy, a strip of the run: failed requests, lost sessions and
/// stale reads per slice of time, with the faults marked.
fn timeline_chart(figures: &LabFigures) -> String {
    let strip = 62;
    let left = 150;
    // Room on the right for each strip's peak.
    let right = i32::try_from(WIDTH).unwrap_or(900) - 70;
    let slices = figures
        .strategies
        .iter()
        .filter_map(|s| s.measured.as_ref())
        .map(|m| m.timeline.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let span = figures
        .strategies
        .iter()
        .filter_map(|s| s.measured.as_ref())
        .filter_map(|m| m.timeline.get(1).map(|b| b.start_seconds))
        .next()
        .unwrap_or(1.0)
        * slices as f64;
    let x = |seconds: f64| left + ((seconds / span) * f64::from(right - left)) as i32;
    let labels = fault_labels(figures, span / f64::from(right - left));
    let rows = labels
        .iter()
        .map(|label| label.row)
        .max()
        .map_or(1, |row| row + 1);
    let height = TOP + 10 + strip * px(figures.strategies.len()) + 18 + LABEL_ROW * px(rows);
    svg(height, |root| {
        let _ = root.draw(&Text::new(
            "What went wrong, and when: requests per time slice",
            (10, 12),
            font(17),
        ));
        for (i, (name, shade)) in [
            ("failed (5xx, timeout)", FAILED),
            ("lost session (logged out)", LOST),
            ("stale read", STALE),
        ]
        .into_iter()
        .enumerate()
        {
            let lx = left + 220 * px(i);
            let _ = root.draw(&Rectangle::new([(lx, 38), (lx + 12, 50)], shade.filled()));
            let _ = root.draw(&Text::new(
                name,
                (lx + 17, 44),
                font_at(12, HPos::Left, VPos::Center),
            ));
        }
        let base = TOP + 10;
        // Shade the outages, so each strip shows what was down when: from
        // when the strategy's own kill took effect to when its own restart
        // did, which may be later than planned (the lines mark the plan).
        for (i, strategy) in figures.strategies.iter().enumerate() {
            let Some(m) = &strategy.measured else {
                continue;
            };
            let at = |action| {
                m.faults_applied
                    .iter()
                    .find(|f| f.action == action)
                    .map(|f| x(f.applied_seconds))
            };
            let outage = |from, to| at(from).zip(at(to));
            let top = base + strip * px(i);
            let bands = [
                outage(Action::KillNode, Action::RestartNode),
                outage(Action::KillRedis, Action::RestartRedis),
                outage(Action::PartitionNode, Action::HealPartition),
            ];
            for (x0, x1) in bands.into_iter().flatten() {
                let _ = root.draw(&Rectangle::new(
                    [(x0, top - 2), (x1, top + strip - 12)],
                    SHADE.filled(),
                ));
            }
        }
        // The strips end here; the labels go below, each on the first row
        // where it overlaps no other, with its line drawn down to it.
        let strips_end = base + strip * px(figures.strategies.len()) - 8;
        for label in &labels {
            let fx = x(label.at_seconds);
            let ly = strips_end + 12 + LABEL_ROW * px(label.row);
            let (line, text) = if label.end_of_load {
                (BLACK, BLACK)
            } else {
                (GREY, GREY)
            };
            let _ = root.draw(&PathElement::new(
                vec![(fx, base - 2), (fx, ly - 5)],
                line.stroke_width(1),
            ));
            let _ = root.draw(&Text::new(
                label.text.clone(),
                (fx + 3, ly),
                font_at(10, HPos::Left, VPos::Center).color(&text),
            ));
        }
        for (i, strategy) in figures.strategies.iter().enumerate() {
            let top = base + strip * px(i);
            let bottom = top + strip - 12;
            let _ = root.draw(&PathElement::new(
                vec![(left, bottom), (right, bottom)],
                LIGHT.stroke_width(1),
            ));
            let label = format!("{}  {}", strategy.letter, strategy.short_name);
            let Some(m) = row(root, strategy, label, left, top + (strip - 12) / 2) else {
                continue;
            };
            let peak = m
                .timeline
                .iter()
                .map(|b| b.failed + b.lost_sessions + b.stale_reads)
                .max()
                .unwrap_or(0);
            if peak == 0 {
                let _ = root.draw(&Text::new(
                    "nothing went wrong",
                    (left + 6, bottom - 10),
                    font_at(11, HPos::Left, VPos::Center).color(&color(i)),
                ));
                continue;
            }
            let scale = f64::from(strip - 16) / peak as f64;
            for bucket in &m.timeline {
                let x0 = x(bucket.start_seconds) + 1;
                let x1 = (x(bucket.start_seconds + span / slices as f64) - 1).max(x0 + 1);
                let mut y = bottom;
                for (count, shade) in [
                    (bucket.failed, FAILED),
                    (bucket.lost_sessions, LOST),
                    (bucket.stale_reads, STALE),
                ] {
                    if count == 0 {
                        continue;
                    }
                    let h = ((count as f64 * scale) as i32).max(1);
                    let _ = root.draw(&Rectangle::new([(x0, y - h), (x1, y)], shade.filled()));
                    y -= h;
                }
            }
            let _ = root.draw(&Text::new(
                format!("peak {peak}"),
                (right + 62, top + 2),
                font_at(10, HPos::Right, VPos::Top).color(&GREY),
            ));
        }
    })
}

/// The height of one row of fault labels under the timeline.
const LABEL_ROW: i32 = 13;
/// About how wide one character of a 10 px label is, to tell overlaps.
const LABEL_CHAR: f64 = 5.6;

/// A fault's label under the timeline, and its row.
#[derive(Debug)]
struct FaultLabel {
    at_seconds: f64,
    text: String,
    row: usize,
    end_of_load: bool,
}

/// The timeline's labels: every planned fault and the end of the load,
/// each on the first row where it overlaps no label already placed. With
/// all labels on one row, faults a few seconds apart wrote over each
/// other.
fn fault_labels(figures: &LabFigures, seconds_per_px: f64) -> Vec<FaultLabel> {
    let mut wanted: Vec<(f64, String, bool)> = figures
        .schedule
        .iter()
        .map(|fault| {
            (
                fault.at_seconds,
                format!("{} (plan {:.0} s)", fault.label, fault.at_seconds),
                false,
            )
        })
        .collect();
    wanted.push((figures.load_seconds, "end of load".to_owned(), true));
    wanted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Seconds per character, at the timeline's scale: the labels' extent
    // is compared in seconds.
    let per_char = seconds_per_px * LABEL_CHAR;
    // Where each row's last label ends, in seconds.
    let mut row_ends: Vec<f64> = Vec::new();
    wanted
        .into_iter()
        .map(|(at_seconds, text, end_of_load)| {
            let end = at_seconds + per_char * (text.len() as f64 + 1.0);
            let row = match row_ends.iter().position(|&ends| ends < at_seconds) {
                Some(row) => {
                    row_ends[row] = end;
                    row
                }
                None => {
                    row_ends.push(end);
                    row_ends.len() - 1
                }
            };
            FaultLabel {
                at_seconds,
                text,
                row,
                end_of_load,
            }
        })
        .collect()
}

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

/// Session copies per app server against the number of servers, one line
/// per family that ran at both sizes: clustering climbs with N (every
/// server holds every session), the cluster's stays near 2/N of them.
fn memory_against_n_chart(strategies: &[StrategyFigures]) -> String {
    let families = cost::memory_against_n(strategies);
    let max = families
        .iter()
        .flat_map(|family| family.points.iter().map(|(_, per)| *per))
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.2;
    let (left, right, top, bottom) = (110, 700, 70, 290);
    let x = |n: usize| left + ((n as f64 - 2.0) / 4.0 * f64::from(right - left)) as i32;
    let y = |per: f64| bottom - ((per / max) * f64::from(bottom - top)) as i32;
    svg(bottom + 50, |root| {
        let _ = root.draw(&Text::new(
            "Memory per server against N: session copies each app server holds (same users at every N)",
            (10, 12),
            font(17),
        ));
        let _ = root.draw(&PathElement::new(
            vec![(left, top - 10), (left, bottom), (right + 20, bottom)],
            GREY.stroke_width(1),
        ));
        for n in 2..=6 {
            let _ = root.draw(&Text::new(
                format!("N = {n}"),
                (x(n), bottom + 14),
                font_at(11, HPos::Center, VPos::Center).color(&GREY),
            ));
        }
        let _ = root.draw(&Text::new(
            format!("{:.0}", max / 1.2),
            (left - 8, y(max / 1.2)),
            font_at(11, HPos::Right, VPos::Center).color(&GREY),
        ));
        let _ = root.draw(&Text::new(
            "0",
            (left - 8, bottom),
            font_at(11, HPos::Right, VPos::Center).color(&GREY),
        ));
        let _ = root.draw(&Text::new(
            "app servers",
            ((left + right) / 2, bottom + 34),
            font_at(12, HPos::Center, VPos::Center),
        ));
        for (i, family) in families.iter().enumerate() {
            let first = strategies
                .iter()
                .position(|s| s.key == family.key)
                .unwrap_or(i);
            let shade = color(first);
            let ly = 40 + 16 * px(i);
            let _ = root.draw(&Rectangle::new(
                [(left, ly - 5), (left + 12, ly + 5)],
                shade.filled(),
            ));
            let _ = root.draw(&Text::new(
                family.name.to_owned(),
                (left + 18, ly),
                font_at(12, HPos::Left, VPos::Center),
            ));
            let line: Vec<(i32, i32)> = family
                .points
                .iter()
                .map(|&(n, per)| (x(n), y(per)))
                .collect();
            let _ = root.draw(&PathElement::new(line.clone(), shade.stroke_width(2)));
            for (&(n, per), &(px_, py)) in family.points.iter().zip(&line) {
                let _ = root.draw(&Circle::new((px_, py), 4, shade.filled()));
                let _ = root.draw(&Text::new(
                    format!("N = {n}: {per:.0} per server, {:.0} in all", per * n as f64),
                    (px_ + 8, py - 10),
                    font_at(11, HPos::Left, VPos::Center),
                ));
            }
        }
    })
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
    fn fault_labels_close_in_time_go_on_different_rows() {
        let mut figures = figures_with(Vec::new());
        figures.schedule = crate::schedule::schedule(std::time::Duration::from_secs(20), true)
            .iter()
            .map(crate::figures::FaultFigure::from)
            .collect();
        let seconds_per_px = 21.0 / 680.0;
        let labels = fault_labels(&figures, seconds_per_px);
        assert_eq!(labels.len(), figures.schedule.len() + 1);
        let per_char = seconds_per_px * LABEL_CHAR;
        for (i, a) in labels.iter().enumerate() {
            for b in &labels[i + 1..] {
                let a_end = a.at_seconds + per_char * a.text.len() as f64;
                assert!(
                    a.row != b.row || a_end < b.at_seconds,
                    "{a:?} and {b:?} overlap on one row"
                );
            }
        }
        assert!(
            labels.iter().any(|l| l.row > 0),
            "all on one row: {labels:?}"
        );
    }

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
