//! The timeline chart: per strategy, a strip of what went wrong per slice
//! of the run, its own outages shaded, and the faults' labels below,
//! placed so that none overlaps another.

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, VPos},
};

use super::charts::{
    color, font, font_at, px, row, svg, FAILED, GREY, LIGHT, LOST, SHADE, STALE, TOP, WIDTH,
};
use crate::{figures::LabFigures, schedule::Action};

/// Per strategy, a strip of the run: failed requests, lost sessions and
/// stale reads per slice of time, with the faults marked.
pub(super) fn timeline_chart(figures: &LabFigures) -> String {
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
}
