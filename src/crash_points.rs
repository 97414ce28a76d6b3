//! Deliberate crashes for the reliability suite: [`crash_point`] marks a place in the code where a power cut or a
//! `kill -9` would hurt most (a request sent but its answer not journalled, a transaction half done). When the
//! environment variable `GALLERYFS_CRASH_AT` names that place (`name`, or `name:N` for its N-th hit, counting
//! from 1) the process logs one line and aborts there, without unwinding or flushing anything, as a crash would.
//!
//! Unset (always, outside tests) it costs one atomic load per call: the variable is read once per process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the crash point: `name` or `name:N`.
pub const CRASH_AT_ENV: &str = "GALLERYFS_CRASH_AT";

struct Armed {
    name: String,
    /// Which hit of `name` aborts (1 = the first).
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(CRASH_AT_ENV).ok().and_then(|v| parse(&v)))
        .as_ref()
}

fn parse(value: &str) -> Option<Armed> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let (name, nth) = match value.rsplit_once(':') {
        Some((name, n)) => (name, n.parse().ok().filter(|n| *n >= 1)?),
        None => (value, 1),
    };
    Some(Armed {
        name: name.to_string(),
        nth,
        hits: AtomicU64::new(0),
    })
}

/// Aborts the process when `GALLERYFS_CRASH_AT` names this point (on its N-th hit with `name:N`).
#[inline]
pub fn crash_point(name: &str) {
    if let Some(armed) = armed() {
        hit(armed, name);
    }
}

#[cold]
fn hit(armed: &Armed, name: &str) {
    if armed.name != name {
        return;
    }
    let n = armed.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if n == armed.nth {
        tracing::error!(point = name, hit = n, "crash point reached: aborting ({CRASH_AT_ENV})");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_nth_hit() {
        let a = parse("upload.fragment_sent:3").unwrap();
        assert_eq!((a.name.as_str(), a.nth), ("upload.fragment_sent", 3));
        let a = parse("replay.delete_sent").unwrap();
        assert_eq!((a.name.as_str(), a.nth), ("replay.delete_sent", 1));
        assert!(parse("").is_none());
        assert!(parse("x:0").is_none(), "hits count from 1");
        assert!(parse("x:many").is_none());
    }

    #[test]
    fn only_the_nth_hit_of_the_named_point_fires() {
        // `hit` aborts on the 3rd hit of "p"; the 1st and 2nd, and other names, pass.
        let a = parse("p:3").unwrap();
        hit(&a, "p");
        hit(&a, "other");
        hit(&a, "p");
        assert_eq!(a.hits.load(Ordering::SeqCst), 2);
    }
}
