//! Medians across runs, the ratios the targets are stated in, and the report files.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::Run;
use crate::stats::{Sample, Unit};
use crate::sweep::{CALLERS, Point, Shape};

/// Memory per idle connection and per idle endpoint, in bytes.
pub struct Memory {
    pub per_connection: Option<f64>,
    pub per_endpoint: Option<f64>,
}

/// One row of the results table: medians across runs, with min-max.
struct Row {
    id: &'static str,
    p50: Option<Spread>,
    p99: Option<Spread>,
    rate: Spread,
    unit: Unit,
}

#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(Spread {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        })
    }
}

/// A ratio between two benchmarks of the same run, and its target.
struct Ratio {
    name: &'static str,
    value: Option<Spread>,
    target: Option<Target>,
}

#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtMost(t) => value <= t,
            Target::AtLeast(t) => value >= t,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtMost(t) => format!("<= {t}"),
            Target::AtLeast(t) => format!(">= {t}"),
        }
    }
}

enum Metric {
    P50,
    P99,
    Rate,
}

fn metric(sample: &Sample, metric: &Metric) -> Option<f64> {
    match metric {
        Metric::P50 => sample.latency.map(|(p50, _)| p50.as_secs_f64() * 1e6),
        Metric::P99 => sample.latency.map(|(_, p99)| p99.as_secs_f64() * 1e6),
        Metric::Rate => Some(sample.rate),
    }
}

fn ratio(
    runs: &[Run],
    name: &'static str,
    a: &str,
    b: &str,
    m: Metric,
    target: Option<Target>,
) -> Ratio {
    let per_run = runs
        .iter()
        .filter_map(|run| {
            let x = run
                .samples
                .iter()
                .find(|s| s.id == a)
                .and_then(|s| metric(s, &m))?;
            let y = run
                .samples
                .iter()
                .find(|s| s.id == b)
                .and_then(|s| metric(s, &m))?;
            Some(x / y)
        })
        .collect();
    Ratio {
        name,
        value: Spread::of(per_run),
        target,
    }
}

fn rows(runs: &[Run]) -> Vec<Row> {
    let ids: Vec<&'static str> = runs
        .first()
        .map(|r| r.samples.iter().map(|s| s.id).collect())
        .unwrap_or_default();
    ids.into_iter()
        .map(|id| {
            let samples: Vec<&Sample> = runs
                .iter()
                .flat_map(|r| r.samples.iter().filter(|s| s.id == id))
                .collect();
            let collect =
                |m: Metric| Spread::of(samples.iter().filter_map(|s| metric(s, &m)).collect());
            Row {
                id,
                p50: collect(Metric::P50),
                p99: collect(Metric::P99),
                rate: collect(Metric::Rate).unwrap_or(Spread {
                    median: 0.0,
                    min: 0.0,
                    max: 0.0,
                }),
                unit: samples.first().map(|s| s.unit).unwrap_or(Unit::CallsPerSec),
            }
        })
        .collect()
}

fn ratios(runs: &[Run]) -> Vec<Ratio> {
    use Metric::*;
    use Target::{AtLeast, AtMost};
    let r = |name, a, b, m, target| ratio(runs, name, a, b, m, target);
    vec![
        r(
            "ours.seq p50 / raw.seq p50",
            "ours.seq",
            "raw.seq",
            P50,
            Some(AtMost(1.3)),
        ),
        r(
            "tarpc.seq p50 / raw.seq p50",
            "tarpc.seq",
            "raw.seq",
            P50,
            None,
        ),
        r(
            "ours.seq p99 / raw.seq p99",
            "ours.seq",
            "raw.seq",
            P99,
            Some(AtMost(1.5)),
        ),
        r(
            "tarpc.seq p99 / raw.seq p99",
            "tarpc.seq",
            "raw.seq",
            P99,
            None,
        ),
        r(
            "ours.pipe64 / mpsc.pipe64 calls/s",
            "ours.pipe64",
            "mpsc.pipe64",
            Rate,
            Some(AtLeast(0.35)),
        ),
        r(
            "tarpc.pipe64 / mpsc.pipe64 calls/s",
            "tarpc.pipe64",
            "mpsc.pipe64",
            Rate,
            None,
        ),
        r(
            "raw.pipe64 / mpsc.pipe64 calls/s",
            "raw.pipe64",
            "mpsc.pipe64",
            Rate,
            None,
        ),
        r(
            "ours.pipe64 / tarpc.pipe64 calls/s",
            "ours.pipe64",
            "tarpc.pipe64",
            Rate,
            None,
        ),
        r(
            "ours.bulk1m / raw.bulk1m MB/s",
            "ours.bulk1m",
            "raw.bulk1m",
            Rate,
            Some(AtLeast(0.85)),
        ),
        r(
            "tarpc.bulk1m / raw.bulk1m MB/s",
            "tarpc.bulk1m",
            "raw.bulk1m",
            Rate,
            None,
        ),
        r(
            "ours.bulk1m.vec / ours.bulk1m MB/s (Vec<u8> against ByteBuf)",
            "ours.bulk1m.vec",
            "ours.bulk1m",
            Rate,
            Some(AtLeast(0.9)),
        ),
        r(
            "ours.local p50 / mpsc.seq p50",
            "ours.local",
            "mpsc.seq",
            P50,
            Some(AtMost(1.6)),
        ),
        r(
            "ours.local_pipe64 / mpsc.pipe64 calls/s",
            "ours.local_pipe64",
            "mpsc.pipe64",
            Rate,
            Some(AtLeast(0.6)),
        ),
        r(
            "ours.secret.seq p50 / ours.seq p50 (cost of the secret)",
            "ours.secret.seq",
            "ours.seq",
            P50,
            Some(AtMost(1.15)),
        ),
        r(
            "ours.pipe64 / ours.secret.pipe64 calls/s (cost of the secret)",
            "ours.pipe64",
            "ours.secret.pipe64",
            Rate,
            Some(AtMost(1.15)),
        ),
        r(
            "ours.tls.seq p50 / ours.seq p50 (cost of TLS)",
            "ours.tls.seq",
            "ours.seq",
            P50,
            None,
        ),
        r(
            "ours.pipe64 / ours.tls.pipe64 calls/s (cost of TLS)",
            "ours.pipe64",
            "ours.tls.pipe64",
            Rate,
            None,
        ),
        r(
            "ours.fenced.seq p50 / ours.seq p50 (cost of fencing)",
            "ours.fenced.seq",
            "ours.seq",
            P50,
            None,
        ),
        r(
            "ours.deadline.seq p50 / ours.seq p50 (a timeout of the call's own)",
            "ours.deadline.seq",
            "ours.seq",
            P50,
            None,
        ),
        r(
            "ours.pipe64 / ours.deadline.pipe64 calls/s (a timeout of the call's own)",
            "ours.pipe64",
            "ours.deadline.pipe64",
            Rate,
            None,
        ),
        r(
            "ours.relay.seq p50 / ours.seq p50 (one more hop: a Gate's relay)",
            "ours.relay.seq",
            "ours.seq",
            P50,
            None,
        ),
        r(
            "ours.pipe64 / ours.relay.pipe64 calls/s (one more hop: a Gate's relay)",
            "ours.pipe64",
            "ours.relay.pipe64",
            Rate,
            None,
        ),
        r(
            "ours.stream64 / raw.stream64 items/s (64-byte stream items)",
            "ours.stream64",
            "raw.stream64",
            Rate,
            None,
        ),
        r(
            "ours.stream1m / raw.stream1m MB/s (1 MiB `Bytes` stream items)",
            "ours.stream1m",
            "raw.stream1m",
            Rate,
            None,
        ),
    ]
}

/// Medians across runs of one sweep point: (calls/s, p50 µs, p99 µs, p99/p50).
type Medians = (f64, f64, f64, f64);

fn sweep_point(runs: &[Run], shape: Shape, callers: usize) -> Option<Medians> {
    let points: Vec<&Point> = runs
        .iter()
        .flat_map(|r| r.sweep.iter())
        .filter(|p| p.shape == shape && p.callers == callers)
        .collect();
    let median = |f: &dyn Fn(&Point) -> f64| {
        Spread::of(points.iter().map(|p| f(p)).collect()).map(|s| s.median)
    };
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    Some((
        median(&|p| p.rate)?,
        median(&|p| us(p.p50))?,
        median(&|p| us(p.p99))?,
        median(&|p| us(p.p99) / us(p.p50).max(1e-3))?,
    ))
}

/// How far p99 may be from p50 at 1,000 callers: fairness between callers.
const SWEEP_FAIRNESS: f64 = 10.0;

fn sweep_markdown(out: &mut String, runs: &[Run]) {
    if runs.iter().all(|r| r.sweep.is_empty()) {
        return;
    }
    let _ = writeln!(
        out,
        "\nConcurrency sweep: `say_bye(\"neo\")` from N concurrent callers, each calling one after \
         another (medians of the runs; p99/p50 is the median of each run's ratio).\n"
    );
    let shapes = [Shape::OneConnection, Shape::PerHundred];
    let _ = writeln!(
        out,
        "| callers | {} calls/s | p50 µs | p99 µs | p99/p50 | {} calls/s | p50 µs | p99 µs | p99/p50 |",
        shapes[0].label(),
        shapes[1].label()
    );
    let _ = writeln!(
        out,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for callers in CALLERS {
        let _ = write!(out, "| {} |", grouped(callers as u64));
        for shape in shapes {
            match sweep_point(runs, shape, callers) {
                Some((rate, p50, p99, spread)) => {
                    let _ = write!(
                        out,
                        " {} | {} | {} | {:.1} |",
                        number(rate),
                        number(p50),
                        number(p99),
                        spread
                    );
                }
                None => {
                    let _ = write!(out, " – | – | – | – |");
                }
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\n| fairness at 1,000 callers | p99/p50 | target | met |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for shape in shapes {
        if let Some((_, _, _, spread)) = sweep_point(runs, shape, 1_000) {
            let met = if spread <= SWEEP_FAIRNESS {
                "yes"
            } else {
                "**no**"
            };
            let _ = writeln!(
                out,
                "| {} | {spread:.1} | <= {SWEEP_FAIRNESS} | {met} |",
                shape.label()
            );
        }
    }
}

/// `n` with a comma between groups of three digits.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn number(x: f64) -> String {
    if x >= 100.0 {
        grouped(x.round() as u64)
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn spread(s: Option<Spread>) -> String {
    match s {
        Some(s) => format!("{} ({}–{})", number(s.median), number(s.min), number(s.max)),
        None => "–".to_owned(),
    }
}

/// The report as Markdown (also printed).
pub fn markdown(runs: &[Run], memory: &Memory, heading: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{heading}\n");
    let _ = writeln!(out, "| id | p50 µs | p99 µs | rate | unit |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for row in rows(runs) {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            row.id,
            spread(row.p50),
            spread(row.p99),
            spread(Some(row.rate)),
            row.unit.label()
        );
    }
    let _ = writeln!(
        out,
        "\n| ratio (same run) | median (min–max) | target | met |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for r in ratios(runs) {
        let met = match (r.target, r.value) {
            (Some(t), Some(v)) => {
                if t.met(v.median) {
                    "yes"
                } else {
                    "**no**"
                }
            }
            _ => "",
        };
        let target = r
            .target
            .map(Target::text)
            .unwrap_or_else(|| "reference".to_owned());
        let _ = writeln!(
            out,
            "| {} | {} | {target} | {met} |",
            r.name,
            spread(r.value)
        );
    }
    let kib = |b: Option<f64>| {
        b.map(|b| format!("{:.1} KiB", b / 1024.0))
            .unwrap_or_else(|| "–".to_owned())
    };
    let conn_met = memory
        .per_connection
        .map(|b| if b <= 16.0 * 1024.0 { "yes" } else { "**no**" })
        .unwrap_or("");
    let ep_met = memory
        .per_endpoint
        .map(|b| if b <= 1024.0 { "yes" } else { "**no**" })
        .unwrap_or("");
    let _ = writeln!(out, "\n| memory | resident | target | met |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    let _ = writeln!(
        out,
        "| per idle connection (1,000; both ends and the client's service in this process) | {} | <= 16 KiB | {conn_met} |",
        kib(memory.per_connection)
    );
    let _ = writeln!(
        out,
        "| per idle endpoint (10,000) | {} | <= 1 KiB | {ep_met} |",
        kib(memory.per_endpoint)
    );
    sweep_markdown(&mut out, runs);
    out
}

/// A bar chart of each contender against its floor (raw TCP, or mpsc in process).
pub fn svg(runs: &[Run], heading: &str) -> String {
    use Metric::*;
    let med = |a: &str, b: &str, m: Metric| ratio(runs, "", a, b, m, None).value.map(|s| s.median);
    // (title, bars of (contender, ratio to the floor), target or NaN)
    type Group<'a> = (&'a str, Vec<(&'a str, Option<f64>)>, f64);
    let groups: Vec<Group> = vec![
        (
            "seq p50 latency, × raw (lower is better; target ours ≤ 1.3)",
            vec![
                ("raw", Some(1.0)),
                ("tarpc", med("tarpc.seq", "raw.seq", P50)),
                ("ours", med("ours.seq", "raw.seq", P50)),
            ],
            1.3,
        ),
        (
            "pipe64 calls/s, × mpsc.pipe64 (higher is better; target ours ≥ 0.35)",
            vec![
                ("mpsc", Some(1.0)),
                ("tarpc", med("tarpc.pipe64", "mpsc.pipe64", Rate)),
                ("ours", med("ours.pipe64", "mpsc.pipe64", Rate)),
            ],
            0.35,
        ),
        (
            "bulk 1 MiB MB/s, × raw (higher is better; target ours ≥ 0.85)",
            vec![
                ("raw", Some(1.0)),
                ("tarpc", med("tarpc.bulk1m", "raw.bulk1m", Rate)),
                ("ours", med("ours.bulk1m", "raw.bulk1m", Rate)),
            ],
            0.85,
        ),
        (
            "local ask p50, × mpsc.seq (lower is better; target ours ≤ 1.6)",
            vec![
                ("mpsc", Some(1.0)),
                ("ours", med("ours.local", "mpsc.seq", P50)),
            ],
            1.6,
        ),
        (
            "local pipe64 calls/s, × mpsc.pipe64 (higher is better; target ours ≥ 0.6)",
            vec![
                ("mpsc", Some(1.0)),
                ("ours", med("ours.local_pipe64", "mpsc.pipe64", Rate)),
            ],
            0.6,
        ),
    ];
    let (width, left, bar, gap) = (760.0, 70.0, 18.0, 6.0);
    let mut y = 58.0;
    let mut body = String::new();
    for (title, bars, target) in &groups {
        let scale_max = bars
            .iter()
            .filter_map(|(_, v)| *v)
            .fold(if target.is_nan() { 1.0 } else { *target }, f64::max)
            * 1.15;
        let px = |v: f64| (width - left - 80.0) * v / scale_max;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" font-size="13" font-weight="bold">{title}</text>"#
        );
        y += 10.0;
        let top = y;
        for (name, value) in bars {
            let v = value.unwrap_or(0.0);
            let color = match *name {
                "ours" => "#2b7bba",
                "tarpc" => "#e08a2c",
                _ => "#888",
            };
            let _ = writeln!(
                body,
                r#"<text x="10" y="{}" font-size="12">{name}</text>"#,
                y + bar - 5.0
            );
            let _ = writeln!(
                body,
                r#"<rect x="{left}" y="{y}" width="{:.1}" height="{bar}" fill="{color}"/>"#,
                px(v)
            );
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{}" font-size="12">{:.2}</text>"#,
                left + px(v) + 4.0,
                y + bar - 5.0,
                v
            );
            y += bar + gap;
        }
        if !target.is_nan() {
            let x = left + px(*target);
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#c00" stroke-dasharray="4 3"/>"##,
                top - 4.0,
                y - gap + 4.0
            );
        }
        y += 22.0;
    }
    document(width, y, heading, &body)
}

/// The seed's published figures (kraps-rpc, `say_bye("neo")`, 4-core VMs in one rack): calls
/// per second from one caller, and the peak as the callers grew.
const SEED_ONE_CALLER: f64 = 2_881.0;
const SEED_PEAK: f64 = 18_600.0;

/// The powers of ten just below `low` and just above `high`.
fn decades(low: f64, high: f64) -> (f64, f64) {
    (
        10f64.powf(low.log10().floor()),
        10f64.powf(high.log10().ceil()),
    )
}

/// The concurrency sweep as two panels over a log axis of callers: calls per second, and
/// p50/p99 latency, one line per shape, with the seed's published figures.
pub fn sweep_svg(runs: &[Run], heading: &str) -> String {
    const HEIGHT: f64 = 220.0;
    let shapes = [
        (Shape::OneConnection, "#2b7bba"),
        (Shape::PerHundred, "#2ca25f"),
    ];
    let (width, left, right) = (780.0_f64, 70.0_f64, 230.0_f64);
    let plot = width - left - right;
    let x = |callers: usize| {
        left + plot * (callers as f64).ln() / (*CALLERS.last().unwrap_or(&1) as f64).ln()
    };
    let mut body = String::new();
    let points: Vec<(Shape, usize, Medians)> = shapes
        .iter()
        .flat_map(|&(shape, _)| {
            CALLERS
                .iter()
                .filter_map(move |&c| sweep_point(runs, shape, c).map(|p| (shape, c, p)))
        })
        .collect();
    // One shape's line through `value` of each point, on the panel's scale `y`.
    let line = |shape: Shape,
                value: fn(&Medians) -> f64,
                y: &dyn Fn(f64) -> f64,
                color: &str,
                dash: &str| {
        let path: Vec<String> = points
            .iter()
            .filter(|(s, _, _)| *s == shape)
            .map(|(_, c, p)| format!("{:.1},{:.1}", x(*c), y(value(p))))
            .collect();
        format!(
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            path.join(" ")
        )
    };
    // A panel's title, frame, callers axis, decade ticks from `low` to `high` and legend;
    // gives the panel's log scale.
    let panel = |body: &mut String, title: &str, top: f64, low: f64, high: f64| {
        let y = move |v: f64| top + HEIGHT - HEIGHT * (v.max(low) / low).ln() / (high / low).ln();
        let _ = writeln!(
            body,
            r#"<text x="10" y="{}" font-size="13" font-weight="bold">{title}</text>"#,
            top - 12.0
        );
        let _ = writeln!(
            body,
            r##"<rect x="{left}" y="{top}" width="{plot}" height="{HEIGHT}" fill="none" stroke="#999"/>"##
        );
        for c in [1, 10, 20, 50, 100, 200, 500, 1_000, 2_000] {
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
                x(c),
                top + HEIGHT + 14.0,
                grouped(c as u64)
            );
        }
        let mut tick = low;
        while tick <= high * 1.001 {
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
                left - 4.0,
                y(tick) + 3.0,
                number(tick)
            );
            tick *= 10.0;
        }
        for (i, (shape, color)) in shapes.iter().enumerate() {
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" font-size="11" fill="{color}">ours, {}</text>"#,
                left + plot + 8.0,
                top + 14.0 + 16.0 * i as f64,
                shape.label()
            );
        }
        y
    };

    // Panel 1: calls per second (the seed's figures are an order of magnitude below
    // loopback on one host).
    let top = 70.0;
    let rates: Vec<f64> = points.iter().map(|(_, _, p)| p.0).collect();
    let (low, high) = decades(
        rates.iter().copied().fold(SEED_ONE_CALLER, f64::min),
        rates.iter().copied().fold(SEED_PEAK, f64::max),
    );
    let title = "calls/s by concurrent callers (log scales)";
    let y = panel(&mut body, title, top, low, high);
    for (shape, color) in shapes {
        let _ = writeln!(body, "{}", line(shape, |p| p.0, &y, color, "none"));
    }
    let _ = writeln!(
        body,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#c00" stroke-dasharray="4 3"/>"##,
        y(SEED_PEAK),
        left + plot,
        y(SEED_PEAK)
    );
    let _ = writeln!(
        body,
        r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#c00"/>"##,
        x(1),
        y(SEED_ONE_CALLER)
    );
    for (i, text) in [
        "seed (kraps-rpc), published:",
        "2,881 calls/s at 1 caller (dot),",
        "18.6k peak (dashed);",
        "4-core VMs, one rack:",
        "different hardware",
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(
            body,
            r##"<text x="{}" y="{}" font-size="11" fill="#c00">{text}</text>"##,
            left + plot + 8.0,
            top + 60.0 + 14.0 * i as f64
        );
    }

    // Panel 2: p50 and p99 latency.
    let top = top + HEIGHT + 60.0;
    let latencies: Vec<f64> = points
        .iter()
        .flat_map(|(_, _, p)| [p.1, p.2])
        .filter(|v| *v > 0.0)
        .collect();
    let (low, high) = decades(
        latencies
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(0.1),
        latencies.iter().copied().fold(1.0, f64::max),
    );
    let title = "latency µs by concurrent callers: p50 (solid), p99 (dashed), log scales";
    let y = panel(&mut body, title, top, low, high);
    for (shape, color) in shapes {
        let _ = writeln!(body, "{}", line(shape, |p| p.1, &y, color, "none"));
        let _ = writeln!(body, "{}", line(shape, |p| p.2, &y, color, "5 3"));
    }
    document(width, top + HEIGHT + 30.0, heading, &body)
}

/// An SVG document of `width` by `height` with `heading` (title, then what follows its first
/// ": ") above `body`.
fn document(width: f64, height: f64, heading: &str, body: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n\
         <text x=\"10\" y=\"38\" font-size=\"12\">{}</text>\n{body}</svg>\n",
        escape(heading.split(": ").next().unwrap_or(heading)),
        escape(heading.split_once(": ").map_or("", |(_, rest)| rest))
    )
}

/// Text as SVG (XML) character data.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `target/bench-report/`, next to the benchmark binary's target directory.
pub fn directory() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|a| a.file_name().is_some_and(|n| n == "target"))
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench-report")
}
