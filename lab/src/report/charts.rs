//! The report's charts, drawn with plotters' SVG backend into strings:
//! the bar charts, the memory charts, and the drawing helpers the timeline
//! (`timeline.rs`) shares.

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::{
    cost,
    figures::{Measured, StrategyFigures},
};

pub(super) const WIDTH: u32 = 900;
const LABEL_WIDTH: i32 = 300;
const BAR_AREA: i32 = 480;
const ROW: i32 = 30;
pub(super) const TOP: i32 = 58;

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
pub(super) const GREY: RGBColor = RGBColor(120, 120, 120);
pub(super) const LIGHT: RGBColor = RGBColor(225, 225, 225);
pub(super) const FAILED: RGBColor = RGBColor(249, 171, 0);
pub(super) const LOST: RGBColor = RGBColor(217, 48, 37);
pub(super) const STALE: RGBColor = RGBColor(147, 52, 230);
/// The background of a strip while something is down.
pub(super) const SHADE: RGBColor = RGBColor(241, 243, 244);

pub(super) fn color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

pub(super) fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

pub(super) fn font_at(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    font(size).pos(Pos::new(h, v))
}

pub(super) fn px(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// What every chart draws on.
pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Starts a strategy's row in a chart whose bars begin at `axis`: its
/// `label` right-aligned before the axis, at height `y`. For a strategy
/// that did not run it also writes why after the axis, in grey, and
/// returns `None`; else what the strategy measured, for the row's bars.
pub(super) fn row<'a>(
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
pub(super) fn svg(height: i32, draw: impl FnOnce(&Area<'_>)) -> String {
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
pub(super) fn bar_chart(
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
pub(super) fn memory_chart(strategies: &[StrategyFigures]) -> String {
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
pub(super) fn paired_chart(
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

/// Session copies per app server against the number of servers, one line
/// per family that ran at both sizes: clustering climbs with N (every
/// server holds every session), the cluster's stays near 2/N of them.
pub(super) fn memory_against_n_chart(strategies: &[StrategyFigures]) -> String {
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
