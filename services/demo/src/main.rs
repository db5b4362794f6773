//! `shadowdiff-demo`: the pieces of the local demo (`deploy/local/demo.sh`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use shadowdiff_core::Role;
use shadowdiff_demo::backend::{self, Behavior};
use shadowdiff_demo::load::{self, CallsSpec, LoadSpec};
use shadowdiff_demo::{freshness, traffic};
use shadowdiff_verdict::VerdictReport;

#[derive(Debug, Parser)]
#[command(about = "Demo backends, traffic and report for shadowdiff")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the demo catalogue (as primary, secondary or candidate).
    Backend {
        #[arg(long)]
        listen: SocketAddr,
        /// Change the price of every item whose number is a multiple of this (0: never).
        #[arg(long, default_value_t = 0)]
        regress_every: u64,
        /// Add honest noise: a per-response timestamp and trace id, and an x-instance-id header.
        #[arg(long)]
        noise: bool,
        /// Return each item's `variants` in a random order.
        #[arg(long)]
        shuffle: bool,
        /// Leave this field out of every item.
        #[arg(long)]
        drop_field: Option<String>,
        /// Answer 503 for every item whose number is a multiple of this (0: never).
        #[arg(long, default_value_t = 0)]
        error_every: u64,
        /// Answer 404 to the item read of every item whose number is a multiple of this
        /// (0: never).
        #[arg(long, default_value_t = 0)]
        not_found_every: u64,
        /// Add this field, with the value "new", to every item: a change that is meant.
        #[arg(long, value_name = "NAME")]
        add_field: Option<String>,
        /// Microseconds every response takes before it is sent, slept to the microsecond.
        #[arg(long, default_value_t = 0)]
        service_time_us: u64,
        /// This instance's name, in the x-instance-id header.
        #[arg(long, default_value = "demo")]
        instance: String,
        /// The inventory service item reads ask about stock (`http://`).
        #[arg(long)]
        inventory: Option<String>,
        /// The HTTP proxy calls to the inventory go through: this deployment's egress tap.
        #[arg(long, requires = "inventory")]
        egress: Option<String>,
        /// Also post an event to the inventory when reading every item whose number is a
        /// multiple of this (0: never): a write the primary never makes.
        #[arg(long, default_value_t = 0, requires = "inventory")]
        extra_write_every: u64,
    },
    /// Serve the inventory the backends call downstream.
    Inventory {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Send item reads and writes through the tap.
    Traffic {
        #[arg(long)]
        tap: String,
        #[arg(long, default_value = "demo")]
        prefix: String,
        #[arg(long, default_value_t = 200)]
        reads: u64,
        #[arg(long, default_value_t = 10)]
        writes: u64,
    },
    /// Send a realistic mix of reads and writes over several routes through the tap, at a
    /// steady rate, until the duration is over or the process is stopped.
    Mix {
        #[arg(long)]
        tap: String,
        #[arg(long, default_value = "demo")]
        prefix: String,
        /// Requests per second.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Seconds to run; 0 runs until stopped.
        #[arg(long, default_value_t = 0)]
        duration_secs: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Send the mix through the tap with known request ids and time each read from its
    /// answer to its shadow's row in ClickHouse; prints the percentiles.
    Freshness(freshness::FreshnessArgs),
    /// Publish whole exchanges (request and every leg's response) straight to Kafka as fast
    /// as the broker takes them, for the correlator's benchmark; prints what it published.
    Load {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        requests_topic: String,
        #[arg(long)]
        responses_topic: String,
        #[arg(long, default_value_t = 10_000)]
        exchanges: u64,
        /// Size of every response body (JSON), in bytes.
        #[arg(long, default_value_t = 2048)]
        body_bytes: usize,
        /// The legs that answer each request; shadow legs each name all shadow legs as expected.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "primary,secondary,candidate")]
        legs: Vec<Leg>,
        /// Percent of candidate answers with another price.
        #[arg(long, default_value_t = 1.5)]
        changed_percent: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Downstream calls every leg makes per exchange, published to --outbound-topic as
        /// each deployment's egress tap would (0: none).
        #[arg(long, default_value_t = 0)]
        calls_per_leg: usize,
        #[arg(long)]
        outbound_topic: Option<String>,
        /// Publish every request and call first and print a `held ...` line; publish the
        /// answers after a line on stdin (so a correlator can read the calls first).
        #[arg(long)]
        answers_after_stdin: bool,
        /// Legs whose answers are never published, so every exchange stays open waiting.
        #[arg(long, value_enum, value_delimiter = ',')]
        withhold: Vec<Leg>,
    },
    /// Receive Alertmanager's webhooks on `POST /alerts` and print one line per alert;
    /// `GET /alerts` lists those received.
    Alerts {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Wait until the verdict API has `expect` samples for the candidate, then print it.
    Report {
        #[arg(long)]
        verdict: String,
        #[arg(long)]
        candidate: String,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

/// A leg that answers in `load`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Leg {
    Primary,
    Secondary,
    Candidate,
}

impl From<Leg> for Role {
    fn from(leg: Leg) -> Self {
        match leg {
            Leg::Primary => Self::Primary,
            Leg::Secondary => Self::Secondary,
            Leg::Candidate => Self::Candidate,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Backend {
            listen,
            regress_every,
            noise,
            shuffle,
            drop_field,
            error_every,
            not_found_every,
            add_field,
            service_time_us,
            instance,
            inventory,
            egress,
            extra_write_every,
        } => {
            let downstream = match &inventory {
                Some(inventory) => match backend::Downstream::new(inventory, egress.as_deref()) {
                    Ok(downstream) => Some(downstream),
                    Err(error) => {
                        eprintln!("--inventory, --egress: {error}");
                        return ExitCode::from(2);
                    }
                },
                None => None,
            };
            let behavior = Behavior {
                regress_every,
                noise,
                shuffle,
                drop_field,
                error_every,
                not_found_every,
                add_field,
                service_time: Duration::from_micros(service_time_us),
                instance,
                downstream,
                extra_write_every,
            };
            serve(listen, behavior).await
        }
        Command::Inventory { listen } => serve_inventory(listen).await,
        Command::Mix { tap, prefix, rate, duration_secs, concurrency } => {
            let duration = (duration_secs > 0).then(|| Duration::from_secs(duration_secs));
            let sent = traffic::mix(&tap, &prefix, rate, duration, concurrency).await;
            println!("sent {} reads and {} writes through {tap}; {} failed", sent.reads, sent.writes, sent.failed);
            Ok(())
        }
        Command::Freshness(args) => {
            freshness::measure(&args.into()).await.map(|m| println!("{m}")).map_err(|e| e.to_string())
        }
        Command::Traffic { tap, prefix, reads, writes } => traffic::drive(&tap, &prefix, reads, writes)
            .await
            .map(|sent| println!("sent {} reads and {} writes through {tap}", sent.reads.len(), sent.writes.len()))
            .map_err(|e| e.to_string()),
        Command::Load {
            brokers,
            requests_topic,
            responses_topic,
            exchanges,
            body_bytes,
            legs,
            changed_percent,
            seed,
            calls_per_leg,
            outbound_topic,
            answers_after_stdin,
            withhold,
        } => {
            let legs = legs.into_iter().map(Role::from).collect();
            let calls = match (calls_per_leg, outbound_topic) {
                (0, _) => None,
                (per_leg, Some(topic)) => Some(CallsSpec { topic, per_leg }),
                (_, None) => {
                    eprintln!("--calls-per-leg needs --outbound-topic");
                    return ExitCode::from(2);
                }
            };
            let spec = LoadSpec {
                brokers,
                requests_topic,
                responses_topic,
                exchanges,
                body_bytes,
                legs,
                changed_percent,
                seed,
                calls,
                withheld: withhold.into_iter().map(Role::from).collect(),
            };
            load_exchanges(&spec, answers_after_stdin).await
        }
        Command::Alerts { listen } => receive_alerts(listen).await,
        Command::Report { verdict, candidate, expect, timeout_secs } => {
            report(&verdict, &candidate, expect, Duration::from_secs(timeout_secs)).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shadowdiff-demo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// How long requests in flight may take to finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn serve(listen: SocketAddr, behavior: Behavior) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| format!("bind {listen}: {e}"))?;
    println!("demo backend on {bound} ({behavior:?})");
    let stop = shadowdiff_runtime::shutdown::signal();
    backend::serve_until(listener, behavior, stop, SHUTDOWN_GRACE).await.map_err(|e| e.to_string())?;
    println!("demo backend on {bound} stopped");
    Ok(())
}

async fn serve_inventory(listen: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    println!("demo inventory on {listen}: GET /stock/{{n}}, POST /events");
    let app = shadowdiff_demo::inventory::app(std::sync::Arc::default());
    axum::serve(listener, app)
        .with_graceful_shutdown(shadowdiff_runtime::shutdown::signal())
        .await
        .map_err(|e| e.to_string())
}

async fn receive_alerts(listen: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| format!("bind {listen}: {e}"))?;
    println!("alert receiver on {bound}: POST /alerts");
    let app = shadowdiff_demo::alerts::app(shadowdiff_demo::alerts::Received::default());
    axum::serve(listener, app)
        .with_graceful_shutdown(shadowdiff_runtime::shutdown::signal())
        .await
        .map_err(|e| format!("serve {bound}: {e}"))
}

/// Publishes, then prints one `key=value` line for scripts to read.
async fn load_exchanges(spec: &LoadSpec, answers_after_stdin: bool) -> Result<(), String> {
    let loaded = if answers_after_stdin {
        let held = |held: &load::Loaded| {
            println!("held {}", loaded_line(held));
            // The script waiting for this line reads it from a file; stdout is a pipe or file.
            let _ = std::io::Write::flush(&mut std::io::stdout());
        };
        let go = async {
            let line = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()));
            let _ = line.await;
        };
        load::publish_answers_after(spec, held, go).await
    } else {
        load::publish(spec).await
    };
    println!("{}", loaded_line(&loaded.map_err(|e| e.to_string())?));
    Ok(())
}

/// What a load published, as `key=value` words for scripts.
fn loaded_line(loaded: &load::Loaded) -> String {
    let seconds = loaded.elapsed.as_secs_f64();
    format!(
        "exchanges={} events={} calls={} bytes={} changed={} seconds={seconds:.2} events_per_sec={:.0}",
        loaded.exchanges,
        loaded.events,
        loaded.calls,
        loaded.bytes,
        loaded.changed,
        loaded.events as f64 / seconds.max(f64::EPSILON),
    )
}

async fn report(verdict: &str, candidate: &str, expect: u64, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::new();
    let url = format!("{verdict}/v1/verdict?candidate={candidate}");
    let deadline = Instant::now() + timeout;
    let mut last: Option<VerdictReport> = None;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while Instant::now() < deadline {
        if let Ok(response) = client.get(&url).send().await
            && let Ok(v) = response.json::<VerdictReport>().await
        {
            let changed = last.as_ref().is_none_or(|l| l.samples != v.samples);
            if terminal {
                eprint!("\r  comparisons recorded: {}/{expect}   ", v.samples);
            } else if changed {
                eprintln!("  comparisons recorded: {}/{expect}", v.samples);
            }
            let done = v.samples >= expect;
            last = Some(v);
            if done {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if terminal {
        eprintln!();
    }
    let v = last.ok_or_else(|| format!("no answer from {url}"))?;
    println!("\nverdict for candidate {:?}", v.candidate);
    println!("  {:<22} {:>8}", "samples", v.samples);
    println!("  {:<22} {:>8}", "compared", v.compared);
    println!("  {:<22} {:>8}", "diverged", v.divergence.count);
    println!("  {:<22} {:>8}", "noise only", v.noise_only);
    println!("  {:<22} {:>8}", "new errors", v.new_errors.count);
    println!("  {:<22} {:>8}", "incomplete", v.incomplete);
    println!("  {:<22} {:>8}", "verdict", v.verdict.as_str());
    if !v.top_paths.is_empty() {
        println!("\n  top differing paths");
        for p in &v.top_paths {
            println!("  {:<22} {:>8}  {}", p.path, p.count, p.kind);
        }
    }
    if v.samples < expect {
        return Err(format!("only {} of {expect} comparisons arrived within {timeout:?}", v.samples));
    }
    Ok(())
}
