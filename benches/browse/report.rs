//! The printed result: figures, targets, rows and the per-latency table.

use std::time::Duration;

pub const MIB: u64 = 1 << 20;

/// One measured figure.
#[derive(Clone, Copy)]
pub enum Figure {
    /// Bytes per second.
    Rate(f64),
    Time(Duration),
    /// Bytes (memory).
    Bytes(u64),
    None,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Figure::Rate(r) => write!(f, "{:.0} MiB/s", r / MIB as f64),
            Figure::Time(t) if *t >= Duration::from_secs(1) => write!(f, "{:.2} s", t.as_secs_f64()),
            Figure::Time(t) => write!(f, "{:.1} ms", t.as_secs_f64() * 1000.0),
            Figure::Bytes(b) => write!(f, "{:.1} MiB", *b as f64 / MIB as f64),
            Figure::None => f.write_str("—"),
        }
    }
}

/// What a row must reach.
#[derive(Clone, Copy)]
pub enum Target {
    /// ratio ≥ x (throughput: galleryfs / reference).
    AtLeast(f64),
    /// ratio ≤ x (time: galleryfs / reference).
    AtMost(f64),
    /// absolute figure ≤ bytes.
    BytesAtMost(u64),
}

impl Target {
    pub fn met(&self, row: &Row) -> Option<bool> {
        match (self, row.ratio, row.galleryfs) {
            (Target::AtLeast(x), Some(r), _) => Some(r >= *x),
            (Target::AtMost(x), Some(r), _) => Some(r <= *x),
            (Target::BytesAtMost(b), _, Figure::Bytes(v)) => Some(v <= *b),
            _ => None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtLeast(x) => write!(f, "≥ {x}"),
            Target::AtMost(x) => write!(f, "≤ {x}"),
            Target::BytesAtMost(b) => write!(f, "≤ {} MiB", b / MIB),
        }
    }
}

pub struct Row {
    pub measure: String,
    pub galleryfs: Figure,
    pub reference: Figure,
    pub ratio: Option<f64>,
    pub target: Target,
    pub note: Option<String>,
}

impl Row {
    /// A row comparing two figures of the same kind; the ratio is oriented so the target reads naturally.
    pub fn compare(measure: String, galleryfs: Figure, reference: Figure, target: Target) -> Row {
        let ratio = match (galleryfs, reference) {
            (Figure::Rate(g), Figure::Rate(r)) if r > 0.0 => Some(g / r),
            (Figure::Time(g), Figure::Time(r)) if !r.is_zero() => Some(g.as_secs_f64() / r.as_secs_f64()),
            _ => None,
        };
        Row {
            measure,
            galleryfs,
            reference,
            ratio,
            target,
            note: None,
        }
    }

    pub fn skipped(measure: String, target: Target, why: String) -> Row {
        Row {
            measure,
            galleryfs: Figure::None,
            reference: Figure::None,
            ratio: None,
            target,
            note: Some(why),
        }
    }

    pub fn failed(measure: String, target: Target, error: &anyhow::Error) -> Row {
        Row::skipped(measure, target, format!("FAILED: {error:#}"))
    }
}

pub fn print_table(title: &str, rows: &[Row]) {
    let w = rows
        .iter()
        .map(|r| r.measure.chars().count())
        .max()
        .unwrap_or(10)
        .max(7);
    println!("\n{title}");
    println!(
        "| {:<w$} | {:>14} | {:>14} | {:>6} | {:>9} | met |",
        "measure", "galleryfs", "reference", "ratio", "target"
    );
    println!(
        "|{}|{}|{}|{}|{}|-----|",
        "-".repeat(w + 2),
        "-".repeat(16),
        "-".repeat(16),
        "-".repeat(8),
        "-".repeat(11)
    );
    for r in rows {
        let ratio = r
            .ratio
            .map(|x| if x < 0.1 { format!("{x:.3}") } else { format!("{x:.2}") })
            .unwrap_or_else(|| "—".into());
        let met = match r.target.met(r) {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "—",
        };
        println!(
            "| {:<w$} | {:>14} | {:>14} | {:>6} | {:>9} | {met:<3} |",
            r.measure,
            r.galleryfs.to_string(),
            r.reference.to_string(),
            ratio,
            r.target.to_string()
        );
        if let Some(n) = &r.note {
            println!("|   ↳ {n}");
        }
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    if v.is_empty() {
        Duration::ZERO
    } else {
        v[v.len() / 2]
    }
}
