//! The benchmark suite: raw TCP, tokio channels, tarpc and this framework, side by side in one
//! process over 127.0.0.1, on a tokio multi-thread runtime with the default worker count.
//!
//! ```text
//! cargo bench -p rpc-bench              # the full suite, 3 runs (about a minute)
//! cargo bench -p rpc-bench -- --smoke   # tiny counts: checks that everything runs
//! ```
//!
//! Prints a table of medians (min-max) and the ratios the targets are stated in, and writes
//! the same as `target/bench-report/report.md` and `chart.svg`.

mod memory;
mod mpsc;
mod ours;
mod raw;
mod report;
mod stats;
mod sweep;
mod tarpc_echo;

use stats::Sample;

/// How many calls each benchmark makes.
#[derive(Clone, Copy)]
struct Counts {
    runs: usize,
    seq: (usize, usize),
    pipe: (usize, usize),
    bulk: (usize, usize),
    local: (usize, usize),
    tell: usize,
    /// Items of a small stream, items of a stream of 1 MiB items.
    stream: (usize, usize),
    fanin: (usize, usize),
    connections: usize,
    endpoints: usize,
    /// Calls at each point of the concurrency sweep.
    sweep: usize,
}

impl Counts {
    fn full() -> Counts {
        Counts {
            runs: 3,
            seq: (2_000, 20_000),
            pipe: (6_400, 200_000),
            bulk: (5, 200),
            local: (5_000, 100_000),
            tell: 200_000,
            stream: (500_000, 500),
            fanin: (2, 50),
            connections: 1_000,
            endpoints: 10_000,
            sweep: 40_000,
        }
    }

    fn smoke() -> Counts {
        Counts {
            runs: 1,
            seq: (20, 200),
            pipe: (640, 6_400),
            bulk: (1, 5),
            local: (20, 500),
            tell: 1_000,
            stream: (1_000, 5),
            fanin: (1, 2),
            connections: 20,
            endpoints: 100,
            sweep: 100,
        }
    }
}

/// What one run of the suite measured.
pub struct Run {
    pub samples: Vec<Sample>,
    pub sweep: Vec<sweep::Point>,
}

async fn suite(counts: Counts) -> Run {
    let mut samples = Vec::new();

    if wanted("raw") {
        let raw = raw::server().await;
        samples.push(raw::seq(raw, counts.seq.0, counts.seq.1).await);
        samples.push(raw::pipe64(raw, counts.pipe.1).await);
        samples.push(raw::bulk1m(raw, counts.bulk.0, counts.bulk.1).await);
        let streams = raw::stream_server().await;
        samples.push(raw::stream(streams, "raw.stream64", counts.stream.0, 64).await);
        samples.push(raw::stream(streams, "raw.stream1m", counts.stream.1, 1 << 20).await);
    }
    if wanted("mpsc") {
        samples.push(mpsc::seq(counts.local.0, counts.local.1).await);
        samples.push(mpsc::pipe64(counts.local.0, counts.local.1).await);
    }
    if wanted("tarpc") {
        let tarpc = tarpc_echo::client(tarpc_echo::server().await).await;
        samples.push(tarpc_echo::seq(&tarpc, counts.seq.0, counts.seq.1).await);
        samples.push(tarpc_echo::pipe64(&tarpc, counts.pipe.0, counts.pipe.1).await);
        samples.push(tarpc_echo::bulk1m(&tarpc, counts.bulk.0, counts.bulk.1).await);
    }

    let ours = ours::setup().await;
    if wanted("ours.seq") {
        samples.push(ours::seq("ours.seq", &ours.remote, counts.seq.0, counts.seq.1).await);
    }
    if wanted("ours.fenced.seq") {
        let (warmup, n) = counts.seq;
        samples.push(ours::fenced_seq("ours.fenced.seq", &ours.fenced, warmup, n).await);
    }
    if wanted("ours.pipe64") {
        samples.push(ours::pipe64("ours.pipe64", &ours.remote, counts.pipe.0, counts.pipe.1).await);
    }
    if wanted("ours.bulk1m") {
        samples.push(ours::bulk1m(&ours.remote, counts.bulk.0, counts.bulk.1).await);
    }
    if wanted("ours.bulk1m.vec") {
        samples.push(ours::bulk1m_vec(&ours.remote, counts.bulk.0, counts.bulk.1).await);
    }
    if wanted("ours.local") {
        samples.push(ours::seq("ours.local", &ours.local, counts.local.0, counts.local.1).await);
    }
    if wanted("ours.local_pipe64") {
        let (warmup, n) = counts.local;
        samples.push(ours::pipe64("ours.local_pipe64", &ours.local, warmup, n).await);
    }
    if wanted("ours.deadline") {
        let (warmup, n) = counts.seq;
        samples.push(ours::deadline_seq(&ours.remote, warmup, n).await);
        let (warmup, n) = counts.pipe;
        samples.push(ours::deadline_pipe64(&ours.remote, warmup, n).await);
    }
    if wanted("ours.stream") {
        let (small, large) = counts.stream;
        samples.push(ours::stream(&ours.remote, "ours.stream64", small, 64).await);
        samples.push(ours::stream(&ours.remote, "ours.stream1m", large, 1 << 20).await);
    }
    if wanted("ours.tell") {
        samples.push(ours::tell(&ours.remote, counts.tell).await);
    }
    if wanted("ours.relay") {
        let relayed = ours::relayed(&ours.server).await;
        let (warmup, n) = counts.seq;
        samples.push(ours::seq("ours.relay.seq", &relayed.echo, warmup, n).await);
        let (warmup, n) = counts.pipe;
        samples.push(ours::pipe64("ours.relay.pipe64", &relayed.echo, warmup, n).await);
        relayed.shutdown().await.expect("shutdown");
    }
    if wanted("ours.fanin") {
        samples.push(ours::fanin(&ours.address, counts.fanin.0, counts.fanin.1).await);
    }
    ours.shutdown().await.expect("shutdown");

    // The same calls over the authenticated, encrypted channel a shared secret gives, and
    // over TLS.
    for (prefix, channel, seq_id, pipe_id) in [
        (
            "ours.secret",
            ours::Channel::Secret("benchmark secret"),
            "ours.secret.seq",
            "ours.secret.pipe64",
        ),
        (
            "ours.tls",
            ours::Channel::Tls,
            "ours.tls.seq",
            "ours.tls.pipe64",
        ),
    ] {
        if wanted(prefix) {
            let sealed = ours::setup_with(channel).await;
            let (warmup, n) = counts.seq;
            samples.push(ours::seq(seq_id, &sealed.remote, warmup, n).await);
            let (warmup, n) = counts.pipe;
            samples.push(ours::pipe64(pipe_id, &sealed.remote, warmup, n).await);
            sealed.shutdown().await.expect("shutdown");
        }
    }

    let sweep = if wanted("sweep") {
        sweep::run(&sweep::Budget {
            calls: counts.sweep,
        })
        .await
    } else {
        Vec::new()
    };
    Run { samples, sweep }
}

/// `--only PREFIX` runs just the benchmarks whose id starts with PREFIX, or that PREFIX
/// starts with (so `--only ours` runs all of ours, `--only raw.seq` runs the raw group).
fn wanted(id: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--only") {
        Some(i) => args
            .get(i + 1)
            .is_some_and(|p| id.starts_with(p.as_str()) || p.starts_with(id)),
        None => true,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|d| d.trim().to_owned())
        .unwrap_or_else(|| "unknown date".to_owned())
}

fn main() -> std::io::Result<()> {
    if let Some(probe) = memory::Probe::from_args() {
        return probe.run();
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    // With the feature, every call below is counted and timed by a real recorder.
    #[cfg(feature = "metrics")]
    let _metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder");
    let counts = if smoke {
        Counts::smoke()
    } else {
        Counts::full()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // Everything runs in tasks on the runtime's workers, as a server's code would: a future
    // passed to `block_on` itself runs on this thread, outside the worker pool, and every
    // wake-up between it and a worker would cross threads.
    //
    // Memory is measured in fresh processes (this binary again, `--memory-probe`), one per
    // measurement: in this one, what a benchmark (or the other measurement) freed would be
    // reused by the allocator and hide what connections and endpoints cost.
    let skip_memory = std::env::args().any(|a| a == "--no-memory");
    let memory = if skip_memory {
        report::Memory {
            per_connection: None,
            per_endpoint: None,
        }
    } else {
        report::Memory {
            per_connection: memory::in_fresh_process("connections", counts.connections),
            per_endpoint: memory::in_fresh_process("endpoints", counts.endpoints),
        }
    };
    let on_workers = |future| runtime.block_on(async { tokio::spawn(future).await });
    let mut runs = Vec::new();
    for run in 1..=counts.runs {
        eprintln!("run {run} of {}", counts.runs);
        runs.push(on_workers(suite(counts)).expect("benchmark suite"));
    }

    let heading = format!(
        "rpc benchmark, {}, {}: {} run(s), medians (min–max){}{}",
        today(),
        machine(),
        counts.runs,
        if cfg!(feature = "metrics") {
            ", with metrics (Prometheus recorder)"
        } else {
            ""
        },
        if smoke {
            ", SMOKE COUNTS (not a measurement)"
        } else {
            ""
        }
    );
    let markdown = report::markdown(&runs, &memory, &heading);
    println!("{markdown}");
    let directory = report::directory();
    std::fs::create_dir_all(&directory)?;
    std::fs::write(directory.join("report.md"), &markdown)?;
    std::fs::write(directory.join("chart.svg"), report::svg(&runs, &heading))?;
    std::fs::write(
        directory.join("sweep.svg"),
        report::sweep_svg(&runs, &heading),
    )?;
    eprintln!("wrote {}", directory.display());
    Ok(())
}
