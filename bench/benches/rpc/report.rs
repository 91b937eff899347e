//! Medians across runs, the ratios the targets are stated in, and the report files.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::stats::{Sample, Unit};

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
    runs: &[Vec<Sample>],
    name: &'static str,
    a: &str,
    b: &str,
    m: Metric,
    target: Option<Target>,
) -> Ratio {
    let per_run = runs
        .iter()
        .filter_map(|run| {
            let x = run.iter().find(|s| s.id == a).and_then(|s| metric(s, &m))?;
            let y = run.iter().find(|s| s.id == b).and_then(|s| metric(s, &m))?;
            Some(x / y)
        })
        .collect();
    Ratio {
        name,
        value: Spread::of(per_run),
        target,
    }
}

fn rows(runs: &[Vec<Sample>]) -> Vec<Row> {
    let ids: Vec<&'static str> = runs
        .first()
        .map(|r| r.iter().map(|s| s.id).collect())
        .unwrap_or_default();
    ids.into_iter()
        .map(|id| {
            let samples: Vec<&Sample> = runs
                .iter()
                .flat_map(|r| r.iter().filter(|s| s.id == id))
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

fn ratios(runs: &[Vec<Sample>]) -> Vec<Ratio> {
    use Metric::*;
    vec![
        ratio(
            runs,
            "ours.seq p50 / raw.seq p50",
            "ours.seq",
            "raw.seq",
            P50,
            Some(Target::AtMost(1.5)),
        ),
        ratio(
            runs,
            "tarpc.seq p50 / raw.seq p50",
            "tarpc.seq",
            "raw.seq",
            P50,
            None,
        ),
        ratio(
            runs,
            "ours.seq p99 / raw.seq p99",
            "ours.seq",
            "raw.seq",
            P99,
            Some(Target::AtMost(2.0)),
        ),
        ratio(
            runs,
            "ours.pipe64 / tarpc.pipe64 calls/s",
            "ours.pipe64",
            "tarpc.pipe64",
            Rate,
            Some(Target::AtLeast(4.0)),
        ),
        ratio(
            runs,
            "ours.pipe64 / raw.pipe64 calls/s",
            "ours.pipe64",
            "raw.pipe64",
            Rate,
            None,
        ),
        ratio(
            runs,
            "ours.bulk1m / raw.bulk1m MB/s",
            "ours.bulk1m",
            "raw.bulk1m",
            Rate,
            Some(Target::AtLeast(0.8)),
        ),
        ratio(
            runs,
            "ours.bulk1m.vec / ours.bulk1m MB/s (Vec<u8> against ByteBuf)",
            "ours.bulk1m.vec",
            "ours.bulk1m",
            Rate,
            Some(Target::AtLeast(0.9)),
        ),
        ratio(
            runs,
            "tarpc.bulk1m / raw.bulk1m MB/s",
            "tarpc.bulk1m",
            "raw.bulk1m",
            Rate,
            None,
        ),
        ratio(
            runs,
            "ours.fenced.seq p50 / ours.seq p50 (cost of fencing)",
            "ours.fenced.seq",
            "ours.seq",
            P50,
            None,
        ),
        ratio(
            runs,
            "ours.secret.seq p50 / ours.seq p50 (cost of the secret)",
            "ours.secret.seq",
            "ours.seq",
            P50,
            Some(Target::AtMost(1.15)),
        ),
        ratio(
            runs,
            "ours.pipe64 / ours.secret.pipe64 calls/s (cost of the secret)",
            "ours.pipe64",
            "ours.secret.pipe64",
            Rate,
            Some(Target::AtMost(1.15)),
        ),
        ratio(
            runs,
            "ours.relay.seq p50 / ours.seq p50 (one more hop: a Gate's relay)",
            "ours.relay.seq",
            "ours.seq",
            P50,
            None,
        ),
        ratio(
            runs,
            "ours.pipe64 / ours.relay.pipe64 calls/s (one more hop: a Gate's relay)",
            "ours.pipe64",
            "ours.relay.pipe64",
            Rate,
            None,
        ),
        ratio(
            runs,
            "ours.stream64 / raw.stream64 items/s (64-byte stream items)",
            "ours.stream64",
            "raw.stream64",
            Rate,
            None,
        ),
        ratio(
            runs,
            "ours.stream1m / raw.stream1m MB/s (1 MiB `Bytes` stream items)",
            "ours.stream1m",
            "raw.stream1m",
            Rate,
            None,
        ),
        ratio(
            runs,
            "ours.local p50 / mpsc.seq p50",
            "ours.local",
            "mpsc.seq",
            P50,
            Some(Target::AtMost(4.0)),
        ),
    ]
}

fn number(x: f64) -> String {
    if x >= 100.0 {
        let n = x.round() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
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
pub fn markdown(runs: &[Vec<Sample>], memory: &Memory, heading: &str) -> String {
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
        .map(|b| if b <= 64.0 * 1024.0 { "yes" } else { "**no**" })
        .unwrap_or("");
    let ep_met = memory
        .per_endpoint
        .map(|b| if b <= 4.0 * 1024.0 { "yes" } else { "**no**" })
        .unwrap_or("");
    let _ = writeln!(out, "\n| memory | resident | target | met |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    let _ = writeln!(
        out,
        "| per idle connection (1,000; both ends and the client's service in this process) | {} | <= 64 KiB | {conn_met} |",
        kib(memory.per_connection)
    );
    let _ = writeln!(
        out,
        "| per idle endpoint (10,000) | {} | <= 4 KiB | {ep_met} |",
        kib(memory.per_endpoint)
    );
    out
}

/// A bar chart of each contender against its floor (raw TCP, or mpsc in process).
pub fn svg(runs: &[Vec<Sample>], heading: &str) -> String {
    use Metric::*;
    let med = |a: &str, b: &str, m: Metric| ratio(runs, "", a, b, m, None).value.map(|s| s.median);
    // (title, bars of (contender, ratio to the floor), target or NaN)
    type Group<'a> = (&'a str, Vec<(&'a str, Option<f64>)>, f64);
    let groups: Vec<Group> = vec![
        (
            "seq p50 latency, × raw (lower is better; target ours ≤ 1.5)",
            vec![
                ("raw", Some(1.0)),
                ("tarpc", med("tarpc.seq", "raw.seq", P50)),
                ("ours", med("ours.seq", "raw.seq", P50)),
            ],
            1.5,
        ),
        (
            "pipe64 calls/s, × raw (higher is better; target ours ≥ 4 × tarpc)",
            vec![
                ("raw", Some(1.0)),
                ("tarpc", med("tarpc.pipe64", "raw.pipe64", Rate)),
                ("ours", med("ours.pipe64", "raw.pipe64", Rate)),
            ],
            med("tarpc.pipe64", "raw.pipe64", Rate).map_or(f64::NAN, |t| 4.0 * t),
        ),
        (
            "bulk 1 MiB MB/s, × raw (higher is better; target ours ≥ 0.8)",
            vec![
                ("raw", Some(1.0)),
                ("tarpc", med("tarpc.bulk1m", "raw.bulk1m", Rate)),
                ("ours", med("ours.bulk1m", "raw.bulk1m", Rate)),
            ],
            0.8,
        ),
        (
            "local ask p50, × mpsc (lower is better; target ours ≤ 4)",
            vec![
                ("mpsc", Some(1.0)),
                ("ours", med("ours.local", "mpsc.seq", P50)),
            ],
            4.0,
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
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{y}\" font-family=\"sans-serif\">\n\
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
