//! Whole-content verification: the quickXorHash of a cached file, computed by streaming over the sparse file.

use crate::remote::QuickXorHash;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const BUFFER: usize = 1024 * 1024;

/// The quickXorHash (base64) of the first `len` bytes of the file at `path`. A file shorter than `len` is an
/// `UnexpectedEof` error.
pub fn quick_xor_of_file(path: &Path, len: u64) -> io::Result<String> {
    quick_xor_continue(path, QuickXorHash::new(), len)
}

/// Continues `hash`, which covers the file's first `hash.len()` bytes, over the file's bytes up to `len` and
/// returns the quickXorHash (base64) of the first `len` bytes. A file shorter than `len` is an `UnexpectedEof`
/// error.
pub fn quick_xor_continue(path: &Path, mut hash: QuickXorHash, len: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(hash.len()))?;
    let mut file = file.take(len.saturating_sub(hash.len()));
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    if hash.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("cache file holds {} of {len} bytes", hash.len()),
        ));
    }
    Ok(hash.finish_base64())
}

/// Whether two quickXorHash values (base64) are the same. OneDrive's values are canonical base64, compared exactly.
pub fn hashes_match(expected: &str, actual: &str) -> bool {
    expected.trim() == actual.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_a_file_prefix_and_refuses_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(quick_xor_of_file(&path, 3_000_000).unwrap(), QuickXorHash::of(&data));
        assert_eq!(quick_xor_of_file(&path, 10).unwrap(), QuickXorHash::of(&data[..10]));
        let mut head = QuickXorHash::new();
        head.update(&data[..1_234_567]);
        assert_eq!(
            quick_xor_continue(&path, head, 3_000_000).unwrap(),
            QuickXorHash::of(&data)
        );
        let err = quick_xor_of_file(&path, 3_000_001).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(hashes_match(&QuickXorHash::of(b"a"), &QuickXorHash::of(b"a")));
        assert!(!hashes_match(&QuickXorHash::of(b"a"), &QuickXorHash::of(b"b")));
    }
}
