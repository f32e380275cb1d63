//! Medians over the rounds, ratios, the Markdown tables, the target checks
//! and the SVG chart.

use std::fmt::Write as _;

use crate::{
    backends::Traffic,
    variants::{Framework, Store, Variant},
};

/// What a handler does with the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    Untouched,
    Read,
    Write,
}

impl Workload {
    pub(crate) const ALL: [Workload; 3] = [Workload::Untouched, Workload::Read, Workload::Write];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Workload::Untouched => "/plain",
            Workload::Read => "/read",
            Workload::Write => "/incr",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Workload::Untouched => "untouched",
            Workload::Read => "read",
            Workload::Write => "write",
        }
    }
}

/// One round's measurement of one variant and workload.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) rps: f64,
    pub(crate) p50_micros: u64,
    pub(crate) p99_micros: u64,
    pub(crate) errors: u64,
    /// CPU the servers spent per request (see `cpu`).
    pub(crate) cpu_micros: f64,
    pub(crate) traffic: Option<Traffic>,
}

/// Every sample of a run, in the order taken.
#[derive(Debug, Default)]
pub(crate) struct Results {
    samples: Vec<(Variant, Workload, usize, Sample)>,
    /// Bytes a store holds per session, by variant, with where they are.
    pub(crate) footprints: Vec<(String, String, Option<u64>)>,
    /// Redis round trips per request from the counting pass, by variant
    /// and workload.
    pub(crate) round_trips: Vec<(Variant, Workload, Traffic)>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The summary of one variant and workload over the rounds.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) variant: Variant,
    pub(crate) workload: Workload,
    pub(crate) rps: f64,
    pub(crate) p50_micros: f64,
    pub(crate) p99_micros: f64,
    pub(crate) errors: u64,
    /// CPU the servers spent per request: the app's process (all but the
    /// load generator's thread) and the store servers' processes.
    pub(crate) cpu_micros: f64,
    /// Median over the rounds of this round's throughput over the bare
    /// framework's in the same round.
    pub(crate) vs_bare: Option<f64>,
    /// The same against the peer crate on the same store.
    pub(crate) vs_peer: Option<f64>,
    /// The same against the variant's ceiling: the framework making the
    /// same store round trips with no session layer.
    pub(crate) vs_ceiling: Option<f64>,
    /// What the store did per request, by its own counters: Redis's
    /// `INFO commandstats` (commands run inside scripts included),
    /// memcached's `stats`, the cluster's peer-link requests.
    pub(crate) traffic: Option<Traffic>,
    /// Requests the app sent its store per request: for Redis, from the
    /// counting pass (scripts count once); otherwise `traffic`.
    pub(crate) round_trips: Option<Traffic>,
}

impl Results {
    pub(crate) fn add(
        &mut self,
        variant: Variant,
        workload: Workload,
        round: usize,
        sample: Sample,
    ) {
        self.samples.push((variant, workload, round, sample));
    }

    fn of(&self, variant: Variant, workload: Workload) -> impl Iterator<Item = (usize, &Sample)> {
        self.samples
            .iter()
            .filter(move |(v, w, _, _)| *v == variant && *w == workload)
            .map(|(_, _, round, sample)| (*round, sample))
    }

    /// The median over rounds of `variant`'s throughput over `other`'s in
    /// the same round.
    fn ratio(&self, variant: Variant, other: Variant, workload: Workload) -> Option<f64> {
        let ratios = self
            .of(variant, workload)
            .filter_map(|(round, sample)| {
                let base = self.of(other, workload).find(|(r, _)| *r == round)?.1;
                (base.rps > 0.0).then(|| sample.rps / base.rps)
            })
            .collect();
        median(ratios)
    }

    pub(crate) fn row(&self, variant: Variant, workload: Workload) -> Option<Row> {
        let samples: Vec<&Sample> = self.of(variant, workload).map(|(_, s)| s).collect();
        let rps = median(samples.iter().map(|s| s.rps).collect())?;
        let traffic = median(
            samples
                .iter()
                .filter_map(|s| s.traffic.as_ref().map(|t| t.per_request))
                .collect(),
        )
        .map(|per_request| Traffic {
            per_request,
            // The breakdown of the round closest to the median.
            detail: samples
                .iter()
                .filter_map(|s| s.traffic.as_ref())
                .min_by(|a, b| {
                    (a.per_request - per_request)
                        .abs()
                        .total_cmp(&(b.per_request - per_request).abs())
                })
                .map(|t| t.detail.clone())
                .unwrap_or_default(),
        });
        Some(Row {
            variant,
            workload,
            rps,
            p50_micros: median(samples.iter().map(|s| s.p50_micros as f64).collect())?,
            p99_micros: median(samples.iter().map(|s| s.p99_micros as f64).collect())?,
            errors: samples.iter().map(|s| s.errors).sum(),
            cpu_micros: median(samples.iter().map(|s| s.cpu_micros).collect())?,
            vs_bare: (variant.bare() != variant)
                .then(|| self.ratio(variant, variant.bare(), workload))
                .flatten(),
            vs_peer: variant
                .peer()
                .and_then(|peer| self.ratio(variant, peer, workload)),
            vs_ceiling: variant
                .ceiling()
                .and_then(|ceiling| self.ratio(variant, ceiling, workload)),
            round_trips: self
                .round_trips
                .iter()
                .find(|(v, w, _)| *v == variant && *w == workload)
                .map(|(_, _, trips)| trips.clone())
                .or_else(|| traffic.clone().filter(|_| variant.redis_db().is_none())),
            traffic,
        })
    }

    pub(crate) fn rows(&self, variants: &[Variant]) -> Vec<Row> {
        variants
            .iter()
            .flat_map(|&v| Workload::ALL.iter().filter_map(move |&w| self.row(v, w)))
            .collect()
    }
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"))
}

/// The throughput table, one section per framework, as Markdown.
pub(crate) fn markdown(results: &Results, variants: &[Variant]) -> String {
    let mut out = String::new();
    for framework in [Framework::Axum, Framework::Actix] {
        let rows: Vec<Row> = results
            .rows(variants)
            .into_iter()
            .filter(|row| row.variant.framework() == framework)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n| {} | workload | req/s | p50 µs | p99 µs | server CPU µs/req | × bare | × peer | × ceiling | store round trips/req | Redis commands run/req | errors |",
            match framework {
                Framework::Axum => "axum variant",
                Framework::Actix => "actix-web variant",
            }
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
        );
        for row in rows {
            let trips = row.round_trips.as_ref().map_or_else(
                || "–".to_owned(),
                |t| {
                    if t.detail.is_empty() {
                        format!("{:.2}", t.per_request)
                    } else {
                        format!("{:.2} ({})", t.per_request, t.detail)
                    }
                },
            );
            let commands = row
                .traffic
                .as_ref()
                .filter(|_| row.variant.redis_db().is_some())
                .map_or_else(|| "–".to_owned(), |t| format!("{:.2}", t.per_request));
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |",
                row.variant.label(),
                row.workload.label(),
                row.rps,
                row.p50_micros,
                row.p99_micros,
                row.cpu_micros,
                ratio_cell(row.vs_bare),
                ratio_cell(row.vs_peer),
                ratio_cell(row.vs_ceiling),
                trips,
                commands,
                row.errors,
            );
        }
    }
    if !results.footprints.is_empty() {
        let _ = writeln!(out, "\n| bytes stored per session | where | bytes |");
        let _ = writeln!(out, "|---|---|---:|");
        for (what, place, bytes) in &results.footprints {
            let bytes = bytes.map_or_else(|| "not measured".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "| {what} | {place} | {bytes} |");
        }
    }
    out
}

/// The performance targets (issues 23 and 24), each with the figure this
/// run measured. A target whose variants this run left out (`--only`,
/// `--workload`) is left out too.
pub(crate) fn targets(results: &Results, variants: &[Variant]) -> String {
    let mut out = String::from("\n| target | measured | met |\n|---|---|---|\n");
    let mut line = |target: String, measured: String, met: bool| {
        let _ = writeln!(
            out,
            "| {target} | {measured} | {} |",
            if met { "yes" } else { "**no**" }
        );
    };
    let ran = |variant: Variant| variants.contains(&variant);
    for row in results.rows(variants) {
        let variant = row.variant;
        let workload = row.workload.label();
        if !variant.is_kit() {
            continue;
        }
        // An untouched request makes no store call, whatever the store.
        if row.workload == Workload::Untouched {
            if let Some(ratio) = row.vs_bare {
                line(
                    format!("{} untouched ≥ 0.95 × bare", variant.label()),
                    format!("{ratio:.2}"),
                    ratio >= 0.95,
                );
            }
        }
        if variant.store() == Store::Memory && row.workload == Workload::Read {
            if let Some(ratio) = row.vs_bare {
                line(
                    format!("{} read ≥ 0.90 × bare", variant.label()),
                    format!("{ratio:.2}"),
                    ratio >= 0.90,
                );
            }
            if let Some(bare) = results.row(variant.bare(), row.workload) {
                let over = row.cpu_micros - bare.cpu_micros;
                line(
                    format!("{} read ≤ +0.6 µs server CPU over bare", variant.label()),
                    format!(
                        "{over:+.1} µs ({:.1} against {:.1})",
                        row.cpu_micros, bare.cpu_micros
                    ),
                    over <= 0.6,
                );
            }
        }
        for &peer in variant.peers().iter().filter(|&&peer| ran(peer)) {
            if let Some(ratio) = results.ratio(variant, peer, row.workload) {
                // The most any session layer could reach against this peer
                // in this run: the variant's ceiling (the same round trips
                // with no session layer; the bare framework when the
                // request makes none) over the peer.
                let ceiling = match (row.workload, variant.ceiling()) {
                    (Workload::Untouched, _) | (_, None) => variant.bare(),
                    (_, Some(ceiling)) => ceiling,
                };
                let bound = ran(ceiling)
                    .then(|| results.ratio(ceiling, peer, row.workload))
                    .flatten()
                    .map_or_else(String::new, |bound| {
                        format!(" (the ceiling, {}, is {bound:.2} ×)", ceiling.label())
                    });
                line(
                    format!("{} ≥ 1.3 × {}, {workload}", variant.label(), peer.label()),
                    format!("{ratio:.2}{bound}"),
                    ratio >= 1.3,
                );
            }
        }
        // The stores held against session-kit's Redis store on the same
        // workload: Memcached (read at least level, write at least 0.8 ×)
        // and the cluster (level on both).
        let against_redis = match (variant.store(), row.workload) {
            (_, Workload::Untouched) => None,
            (Store::Memcached, Workload::Read) | (Store::Cluster, _) => Some(1.0),
            (Store::Memcached, Workload::Write) => Some(0.8),
            _ => None,
        };
        let redis = Variant::AxumKitRedis;
        if let Some(want) = against_redis.filter(|_| ran(redis)) {
            if let Some(ratio) = results.ratio(variant, redis, row.workload) {
                line(
                    format!(
                        "{} ≥ {want:.1} × {}, {workload}",
                        variant.label(),
                        redis.label()
                    ),
                    format!("{ratio:.2}"),
                    ratio >= want,
                );
            }
        }
        if variant.store() == Store::Redis {
            if let Some(traffic) = &row.round_trips {
                let want = match row.workload {
                    Workload::Untouched => 0.0,
                    Workload::Read => 1.0,
                    Workload::Write => 2.0,
                };
                line(
                    format!(
                        "{} Redis round trips per request, {workload} = {want:.0}",
                        variant.label(),
                    ),
                    format!("{:.2}", traffic.per_request),
                    (traffic.per_request - want).abs() < 0.05,
                );
            }
        }
    }
    out
}

/// A horizontal bar chart of throughput relative to the bare framework,
/// one bar per workload for every variant but the bare ones, as SVG.
pub(crate) fn svg(results: &Results, variants: &[Variant]) -> String {
    use plotters::prelude::*;

    const COLORS: [RGBColor; 3] = [
        RGBColor(120, 144, 156),
        RGBColor(66, 133, 244),
        RGBColor(219, 68, 55),
    ];
    const LABEL_WIDTH: i32 = 330;
    const BAR: i32 = 9;
    const WIDTH: i32 = 900;

    let rows: Vec<Row> = results
        .rows(variants)
        .into_iter()
        .filter(|row| row.vs_bare.is_some())
        .collect();
    let shown: Vec<Variant> = variants
        .iter()
        .copied()
        .filter(|v| rows.iter().any(|r| r.variant == *v))
        .collect();
    let group = BAR * 3 + 10;
    let height = 70 + group * i32::try_from(shown.len()).unwrap_or(0) + 30;
    let max = rows
        .iter()
        .filter_map(|r| r.vs_bare)
        .fold(1.0_f64, f64::max)
        .max(1.0);
    let scale = |ratio: f64| ((ratio / max) * f64::from(WIDTH - LABEL_WIDTH - 60)) as i32;

    let mut svg = String::new();
    {
        let width = u32::try_from(WIDTH).unwrap_or(900);
        let root = SVGBackend::with_string(&mut svg, (width, u32::try_from(height).unwrap_or(600)))
            .into_drawing_area();
        let _ = root.fill(&WHITE);
        let text = |size| ("sans-serif", size).into_font().color(&BLACK);
        let _ = root.draw(&Text::new(
            "Throughput relative to the bare framework (1.00 = no session layer)",
            (10, 10),
            text(16),
        ));
        for (i, workload) in Workload::ALL.iter().enumerate() {
            let x = LABEL_WIDTH + 140 * i32::try_from(i).unwrap_or(0);
            let _ = root.draw(&Rectangle::new([(x, 38), (x + 12, 50)], COLORS[i].filled()));
            let _ = root.draw(&Text::new(workload.label(), (x + 16, 37), text(13)));
        }
        let one = LABEL_WIDTH + scale(1.0);
        let _ = root.draw(&PathElement::new(
            vec![(one, 60), (one, height - 25)],
            BLACK.stroke_width(1),
        ));
        let _ = root.draw(&Text::new("1.00", (one - 12, height - 22), text(11)));
        for (g, variant) in shown.iter().enumerate() {
            let top = 65 + group * i32::try_from(g).unwrap_or(0);
            let _ = root.draw(&Text::new(variant.label(), (8, top + BAR), text(12)));
            for (i, workload) in Workload::ALL.iter().enumerate() {
                let Some(ratio) = rows
                    .iter()
                    .find(|r| r.variant == *variant && r.workload == *workload)
                    .and_then(|r| r.vs_bare)
                else {
                    continue;
                };
                let y = top + BAR * i32::try_from(i).unwrap_or(0);
                let end = LABEL_WIDTH + scale(ratio).max(1);
                let _ = root.draw(&Rectangle::new(
                    [(LABEL_WIDTH, y), (end, y + BAR - 1)],
                    COLORS[i].filled(),
                ));
                let _ = root.draw(&Text::new(
                    format!("{ratio:.2}"),
                    (end + 4, y - 1),
                    text(10),
                ));
            }
        }
        let _ = root.present();
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rps: f64) -> Sample {
        Sample {
            rps,
            p50_micros: 100,
            p99_micros: 200,
            errors: 0,
            cpu_micros: 10.0,
            traffic: None,
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn ratios_pair_samples_of_the_same_round() {
        let mut results = Results::default();
        // The machine slows down in round 1: both variants halve, and the
        // within-round ratio stays 0.5 where a ratio of medians would not.
        for (round, bare, kit) in [(0, 100.0, 50.0), (1, 50.0, 25.0), (2, 100.0, 50.0)] {
            results.add(Variant::AxumBare, Workload::Read, round, sample(bare));
            results.add(Variant::AxumKitMemory, Workload::Read, round, sample(kit));
            results.add(
                Variant::AxumTowerSessionsMemory,
                Workload::Read,
                round,
                sample(kit / 2.0),
            );
        }
        let row = results.row(Variant::AxumKitMemory, Workload::Read).unwrap();
        assert_eq!(row.vs_bare, Some(0.5));
        assert_eq!(row.vs_peer, Some(2.0));
        assert_eq!(row.rps, 50.0);
        assert_eq!(
            results
                .row(Variant::AxumBare, Workload::Read)
                .unwrap()
                .vs_bare,
            None
        );
        assert!(results.row(Variant::AxumKitRedis, Workload::Read).is_none());
        let table = markdown(&results, &[Variant::AxumBare, Variant::AxumKitMemory]);
        assert!(table.contains(
            "| axum + session-kit (memory) | read | 50 | 100 | 200 | 10.0 | 0.50 | 2.00 |"
        ));
    }
}
