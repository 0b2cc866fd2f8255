//! `tandem bench ... --stages`: where the run's writes spent their time, from each server's
//! write-stage histograms in `/metrics` scraped before and after the run. The difference of two
//! scrapes is the run's own histogram; its percentiles are estimated from the buckets as
//! Prometheus' `histogram_quantile` does.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tandem_raft::write_stages::WRITE_STAGES;

/// One histogram series: cumulative counts by bucket upper bound, its sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Buckets {
    /// `(upper bound, observations at or below it)`, by bound; `+Inf` last.
    cumulative: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

/// A metric's series by their labels (`le` left out), e.g. `follower="2"`, or `""`.
pub(crate) type Series = BTreeMap<(String, String), Buckets>;

/// A label's name and value, as written.
type Label<'a> = (&'a str, &'a str);

/// Splits `name{labels} value` into its parts; `None` for comments and lines that do not parse.
fn sample(line: &str) -> Option<(&str, Vec<Label<'_>>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        text => text.parse().ok()?,
    };
    let Some((name, labels)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    Some((name, parse_labels(labels.strip_suffix('}')?)?, value))
}

/// `a="1",b="x,y"` into its pairs; quoted values may hold commas and escaped quotes.
fn parse_labels(text: &str) -> Option<Vec<Label<'_>>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut end = None;
        let mut escaped = false;
        for (at, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(at);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        labels.push((name.trim_start_matches(','), &after[..end]));
        rest = &after[end + 1..];
    }
    Some(labels)
}

/// The histograms named in `metrics` that a Prometheus text answer holds.
pub(crate) fn parse(text: &str, metrics: &[&str]) -> Series {
    let mut series = Series::new();
    for (name, labels, value) in text.lines().filter_map(sample) {
        let Some((metric, part)) = metrics.iter().find_map(|metric| {
            let part = name.strip_prefix(metric)?;
            ["_bucket", "_sum", "_count"]
                .contains(&part)
                .then_some((*metric, part))
        }) else {
            continue;
        };
        let le = labels.iter().find(|(k, _)| *k == "le").map(|(_, v)| *v);
        let key = labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        let buckets = series.entry((metric.to_string(), key)).or_default();
        match (part, le) {
            ("_bucket", Some(le)) => {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse() {
                        Ok(bound) => bound,
                        Err(_) => continue,
                    }
                };
                buckets.cumulative.push((bound, value));
            }
            ("_sum", _) => buckets.sum = value,
            ("_count", _) => buckets.count = value,
            _ => {}
        }
    }
    for buckets in series.values_mut() {
        buckets.cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

impl Buckets {
    /// What was observed after `before` was taken (a series absent then counts from zero).
    pub(crate) fn since(&self, before: Option<&Buckets>) -> Buckets {
        let earlier = |bound: f64| {
            before
                .and_then(|b| b.cumulative.iter().find(|(le, _)| *le == bound))
                .map_or(0.0, |(_, count)| *count)
        };
        Buckets {
            cumulative: self
                .cumulative
                .iter()
                .map(|(le, count)| (*le, (count - earlier(*le)).max(0.0)))
                .collect(),
            sum: (self.sum - before.map_or(0.0, |b| b.sum)).max(0.0),
            count: (self.count - before.map_or(0.0, |b| b.count)).max(0.0),
        }
    }

    pub(crate) fn count(&self) -> f64 {
        self.count
    }

    /// The mean observation, in the histogram's unit.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile, interpolated linearly within its bucket as Prometheus does; one that
    /// falls in the `+Inf` bucket is answered with the highest finite bound.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.cumulative.last()?.1;
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.cumulative {
            if count >= rank && count > lower.1 {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let within = (rank - lower.1) / (count - lower.1);
                return Some(lower.0 + (le - lower.0) * within);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

/// Each server's `/metrics`, read for the write stages' histograms.
pub(crate) async fn scrape(http: &reqwest::Client, addrs: &[String]) -> Result<Vec<Series>> {
    let metrics: Vec<&str> = WRITE_STAGES.iter().map(|(metric, _)| *metric).collect();
    let mut scraped = Vec::new();
    for addr in addrs {
        let url = format!("{}/metrics", tandem_client::base_url(addr));
        let text = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("--stages reads {url}"))?
            .text()
            .await
            .with_context(|| format!("--stages reads {url}"))?;
        scraped.push(parse(&text, &metrics));
    }
    Ok(scraped)
}

/// One line of the report: a stage on one server (and, for replication, to one follower).
pub(crate) struct StageRow {
    pub stage: &'static str,
    pub server: String,
    pub labels: String,
    pub run: Buckets,
}

/// The stages, in the order a write passes them, that moved on each server during the run.
pub(crate) fn rows(addrs: &[String], before: &[Series], after: &[Series]) -> Vec<StageRow> {
    let mut rows = Vec::new();
    for &(metric, stage) in WRITE_STAGES {
        for (i, addr) in addrs.iter().enumerate() {
            let Some(now) = after.get(i) else { continue };
            for ((name, labels), buckets) in now {
                if name != metric {
                    continue;
                }
                let earlier = before
                    .get(i)
                    .and_then(|b| b.get(&(name.clone(), labels.clone())));
                let run = buckets.since(earlier);
                if run.count() > 0.0 {
                    rows.push(StageRow {
                        stage,
                        server: addr.clone(),
                        labels: labels.clone(),
                        run,
                    });
                }
            }
        }
    }
    rows
}

fn ms(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| (s * 1000.0 * 1000.0).round() / 1000.0)
}

/// The rows as the JSON report holds them (milliseconds).
pub(crate) fn to_json(rows: &[StageRow]) -> Value {
    rows.iter()
        .map(|row| {
            json!({
                "stage": row.stage,
                "server": row.server,
                "labels": row.labels,
                "count": row.run.count(),
                "mean_ms": ms(row.run.mean()),
                "p50_ms": ms(row.run.quantile(0.5)),
                "p99_ms": ms(row.run.quantile(0.99)),
            })
        })
        .collect()
}

/// The rows as a table.
pub(crate) fn print(rows: &[StageRow]) {
    println!();
    println!(
        "{:<24} {:<22} {:<14} {:>9} {:>9} {:>9} {:>9}",
        "stage", "server", "labels", "count", "mean ms", "p50 ms", "p99 ms"
    );
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for row in rows {
        println!(
            "{:<24} {:<22} {:<14} {:>9} {:>9} {:>9} {:>9}",
            row.stage,
            row.server,
            row.labels,
            row.run.count(),
            cell(ms(row.run.mean())),
            cell(ms(row.run.quantile(0.5))),
            cell(ms(row.run.quantile(0.99))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE tandem_raft_replication_seconds histogram
tandem_raft_replication_seconds_bucket{follower="2",le="0.001"} 1
tandem_raft_replication_seconds_bucket{follower="2",le="0.002"} 2
tandem_raft_replication_seconds_bucket{follower="2",le="+Inf"} 2
tandem_raft_replication_seconds_sum{follower="2"} 0.002
tandem_raft_replication_seconds_count{follower="2"} 2
tandem_other_seconds_bucket{le="+Inf"} 5
"#;

    const AFTER: &str = r#"# TYPE tandem_raft_replication_seconds histogram
tandem_raft_replication_seconds_bucket{follower="2",le="0.001"} 3
tandem_raft_replication_seconds_bucket{follower="2",le="0.002"} 12
tandem_raft_replication_seconds_bucket{follower="2",le="+Inf"} 12
tandem_raft_replication_seconds_sum{follower="2"} 0.017
tandem_raft_replication_seconds_count{follower="2"} 12
tandem_raft_replication_seconds_bucket{follower="3",le="0.001"} 4
tandem_raft_replication_seconds_bucket{follower="3",le="0.002"} 4
tandem_raft_replication_seconds_bucket{follower="3",le="+Inf"} 4
tandem_raft_replication_seconds_sum{follower="3"} 0.002
tandem_raft_replication_seconds_count{follower="3"} 4
"#;

    const NAME: &str = "tandem_raft_replication_seconds";

    fn key(labels: &str) -> (String, String) {
        (NAME.to_string(), labels.to_string())
    }

    #[test]
    fn histograms_are_read_by_series_and_others_left_out() {
        let series = parse(AFTER, &[NAME]);
        assert_eq!(series.len(), 2);
        let two = &series[&key(r#"follower="2""#)];
        assert_eq!(
            two.cumulative,
            vec![(0.001, 3.0), (0.002, 12.0), (f64::INFINITY, 12.0)]
        );
        assert_eq!((two.sum, two.count), (0.017, 12.0));
        assert!(parse(BEFORE, &["tandem_missing_seconds"]).is_empty());
    }

    #[test]
    fn the_run_is_the_difference_of_two_scrapes() {
        let (before, after) = (parse(BEFORE, &[NAME]), parse(AFTER, &[NAME]));
        let two = key(r#"follower="2""#);
        let run = after[&two].since(before.get(&two));
        assert_eq!(
            run.cumulative,
            vec![(0.001, 2.0), (0.002, 10.0), (f64::INFINITY, 10.0)]
        );
        assert_eq!(run.count(), 10.0);
        assert!(close(run.mean(), 0.0015));
        // A series that appeared during the run counts from zero.
        let three = key(r#"follower="3""#);
        assert_eq!(after[&three].since(before.get(&three)), after[&three]);
    }

    fn close(found: Option<f64>, expected: f64) -> bool {
        found.is_some_and(|f| (f - expected).abs() < 1e-12)
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let run = Buckets {
            cumulative: vec![(0.001, 2.0), (0.002, 10.0), (f64::INFINITY, 10.0)],
            sum: 0.015,
            count: 10.0,
        };
        // Rank 5 is the third of the eight observations between 1 and 2 ms.
        assert!(close(run.quantile(0.5), 0.001 + 0.001 * 3.0 / 8.0));
        // Rank 1 is half-way through the first bucket, which starts at 0.
        assert!(close(run.quantile(0.1), 0.0005));
        assert!(close(run.quantile(1.0), 0.002));
        assert_eq!(run.quantile(1.5), None);
    }

    #[test]
    fn a_quantile_past_every_finite_bound_is_the_highest_one() {
        let run = Buckets {
            cumulative: vec![(0.001, 1.0), (f64::INFINITY, 4.0)],
            sum: 30.0,
            count: 4.0,
        };
        assert_eq!(run.quantile(0.99), Some(0.001));
    }

    #[test]
    fn an_empty_histogram_has_no_quantile_nor_mean() {
        assert_eq!(Buckets::default().quantile(0.5), None);
        assert_eq!(Buckets::default().mean(), None);
    }

    #[test]
    fn quoted_label_values_may_hold_commas_and_quotes() {
        let labels = parse_labels(r#"a="x,y",b="say \"hi\"",le="0.5""#);
        assert_eq!(
            labels,
            Some(vec![("a", "x,y"), ("b", r#"say \"hi\""#), ("le", "0.5")])
        );
        assert_eq!(parse_labels(r#"a="unterminated"#), None);
        assert_eq!(sample("no_value_here"), None);
    }

    #[test]
    fn rows_follow_the_stages_and_skip_what_did_not_move() {
        let addrs = vec!["127.0.0.1:1".to_string()];
        let (before, after) = (vec![parse(BEFORE, &[NAME])], vec![parse(AFTER, &[NAME])]);
        let moved = rows(&addrs, &before, &after);
        let shown: Vec<_> = moved
            .iter()
            .map(|r| (r.labels.as_str(), r.run.count()))
            .collect();
        assert_eq!(
            shown,
            vec![(r#"follower="2""#, 10.0), (r#"follower="3""#, 4.0)]
        );
        assert!(rows(&addrs, &after, &after).is_empty());
    }
}
