//! `tandem bench disk`: how many fsyncs per second the data folder's disk does, and how long
//! each takes — the limit a durable write cannot beat without batching many writes into one.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;

/// Settings of the disk workload only.
#[derive(Args)]
#[command(next_help_heading = "Disk")]
pub struct DiskArgs {
    /// Folder to measure (a scratch file is written there and removed)
    #[arg(long, env = "TANDEM_DATA_DIR", default_value = "./tandem-data")]
    data_dir: PathBuf,
    /// Bytes written before each fsync
    #[arg(long, default_value_t = 4096)]
    write_size: usize,
}

/// Writes `write_size` bytes and fsyncs, again and again, for `duration` or `ops` times.
pub fn disk(args: &DiskArgs, duration: Duration, ops: Option<u64>, json: bool) -> Result<()> {
    if args.write_size == 0 {
        bail!("--write-size must be at least 1");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let path = args.data_dir.join(".tandem-bench-disk");
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("cannot write in {}", args.data_dir.display()))?;
    let block = vec![0x5au8; args.write_size];
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let started = Instant::now();
    let mut done = 0u64;
    let result = (|| -> Result<()> {
        while ops.map_or(started.elapsed() < duration, |n| done < n) {
            file.write_all(&block)?;
            let t = Instant::now();
            file.sync_data()?;
            latency.saturating_record(t.elapsed().as_micros() as u64);
            done += 1;
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result.with_context(|| format!("fsync in {} failed", args.data_dir.display()))?;
    let seconds = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let ms = |micros: u64| (micros as f64 / 10.0).round() / 100.0;
    let report = json!({
        "workload": "disk",
        "data_dir": args.data_dir.display().to_string(),
        "write_size": args.write_size,
        "ops": done,
        "ops_per_sec": (done as f64 / seconds).round(),
        "latency_ms": {
            "p50": ms(latency.value_at_quantile(0.5)),
            "p90": ms(latency.value_at_quantile(0.9)),
            "p99": ms(latency.value_at_quantile(0.99)),
            "max": ms(latency.max()),
        },
    });
    if json {
        println!("{report}");
    } else {
        let l = &report["latency_ms"];
        println!(
            "{:<10} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "workload", "fsyncs", "fsyncs/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        println!(
            "{:<10} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "disk",
            done,
            report["ops_per_sec"].as_f64().unwrap_or_default(),
            l["p50"].as_f64().unwrap_or_default(),
            l["p90"].as_f64().unwrap_or_default(),
            l["p99"].as_f64().unwrap_or_default(),
            l["max"].as_f64().unwrap_or_default()
        );
    }
    Ok(())
}
