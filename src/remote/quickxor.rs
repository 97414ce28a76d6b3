//! quickXorHash, OneDrive's content hash (the only hash guaranteed on Personal and Business).
//!
//! A 160-bit register; the byte at absolute offset `i` is rotated left by `(11·i) mod 160` bits and XORed in;
//! at the end the total length (64-bit little endian) is XORed into bytes 12..20 and the 20 bytes are base64
//! encoded. Streaming: only the absolute offset matters, so `update` can be called with any chunking.
//!
//! Speed: since `gcd(11, 160) = 1` and the rotation of offset `i` depends only on `i mod 160`, bytes whose offsets
//! are congruent mod 160 land at the same rotation and XOR together first. `update` therefore XORs whole 160-byte
//! stripes into a 160-byte accumulator eight bytes at a time (memory speed), and only [`QuickXorHash::digest`]
//! folds the accumulator's 160 bytes into the 160-bit register, each at its rotation. The same linearity lets a
//! stream be hashed in pieces in any order ([`QuickXorHash::update_at`]), as parallel downloads deliver it.

use base64::Engine;

/// Bytes per stripe: the rotation pattern repeats every 160 bytes.
const STRIPE: usize = 160;
/// 64-bit words per stripe.
const STRIPE_WORDS: usize = STRIPE / 8;
const SHIFT: usize = 11;

/// Streaming quickXorHash state.
#[derive(Clone, Debug)]
pub struct QuickXorHash {
    /// The XOR of every byte fed, by absolute offset mod 160: byte `j` of the accumulator is byte `j % 8`
    /// (little endian) of word `j / 8`.
    stripe: [u64; STRIPE_WORDS],
    length: u64,
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl QuickXorHash {
    pub fn new() -> Self {
        Self {
            stripe: [0; STRIPE_WORDS],
            length: 0,
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, data: &[u8]) {
        self.update_at(self.length, data);
        self.length = self.length.wrapping_add(data.len() as u64);
    }

    /// Feeds `data` as the bytes at absolute offset `offset` of the stream, leaving [`QuickXorHash::len`] as it
    /// is. The hash is a XOR of every byte at its offset's rotation, so a stream may be hashed in pieces fed in
    /// any order, each byte exactly once; then [`QuickXorHash::set_len`] gives it the stream's length.
    pub fn update_at(&mut self, offset: u64, data: &[u8]) {
        let mut pos = (offset % STRIPE as u64) as usize;
        let mut rest = data;
        // Bytes up to the next stripe boundary, one at a time.
        if pos != 0 {
            let head = rest.len().min(STRIPE - pos);
            for &b in &rest[..head] {
                self.stripe[pos / 8] ^= (b as u64) << (8 * (pos % 8));
                pos += 1;
            }
            rest = &rest[head..];
        }
        // Whole stripes, eight bytes at a time (the compiler vectorises this loop).
        let mut chunks = rest.chunks_exact(STRIPE);
        let mut acc = self.stripe;
        for chunk in &mut chunks {
            for (k, word) in acc.iter_mut().enumerate() {
                let bytes: [u8; 8] = chunk[8 * k..8 * k + 8].try_into().expect("8 bytes");
                *word ^= u64::from_le_bytes(bytes);
            }
        }
        self.stripe = acc;
        // The tail starts at a stripe boundary.
        for (j, &b) in chunks.remainder().iter().enumerate() {
            self.stripe[j / 8] ^= (b as u64) << (8 * (j % 8));
        }
    }

    /// Sets the stream length the digest includes (after feeding pieces with [`QuickXorHash::update_at`]).
    pub fn set_len(&mut self, len: u64) {
        self.length = len;
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The raw 20-byte digest.
    pub fn digest(&self) -> [u8; 20] {
        // The register as 160 bits in a u128 (bits 0..128) and a u32 (bits 128..160) is awkward to rotate; use
        // three u64 cells holding bits 0..64, 64..128, 128..160 and XOR each byte in at its bit position.
        let mut register = [0u64; 3];
        for j in 0..STRIPE {
            let b = (self.stripe[j / 8] >> (8 * (j % 8))) as u8 as u64;
            if b == 0 {
                continue;
            }
            let bit = (SHIFT * j) % STRIPE;
            // The byte covers bits bit..bit+8 (mod 160).
            for k in 0..8 {
                if b & (1 << k) != 0 {
                    let p = (bit + k) % STRIPE;
                    register[p / 64] ^= 1 << (p % 64);
                }
            }
        }
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&register[0].to_le_bytes());
        out[8..16].copy_from_slice(&register[1].to_le_bytes());
        out[16..].copy_from_slice(&register[2].to_le_bytes()[..4]);
        for (i, b) in self.length.to_le_bytes().iter().enumerate() {
            out[12 + i] ^= b;
        }
        out
    }

    /// The digest as OneDrive spells it in `file.hashes.quickXorHash` (base64, 28 characters).
    pub fn finish_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.digest())
    }

    /// Hashes a whole buffer.
    pub fn of(data: &[u8]) -> String {
        let mut h = Self::new();
        h.update(data);
        h.finish_base64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn published_vectors() {
        assert_eq!(QuickXorHash::of(&[]), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(QuickXorHash::of(&b64("Sg==")), "SgAAAAAAAAAAAAAAAQAAAAAAAAA=");
        assert_eq!(QuickXorHash::of(&b64("tbQ=")), "taAFAAAAAAAAAAAAAgAAAAAAAAA=");
        assert_eq!(
            QuickXorHash::of(&b64("2fuxhBJXtpWFe8dOfdGeHw==")),
            "O9tHLAghgSvYohKFyMMxnNCHaHg="
        );
    }

    /// Reference: a literal bit-by-bit implementation of the description.
    fn reference(data: &[u8]) -> String {
        let mut bits = [false; 160];
        for (i, &b) in data.iter().enumerate() {
            let rot = (11 * i as u64) % 160;
            for k in 0..8 {
                if b & (1 << k) != 0 {
                    let p = ((k as u64 + rot) % 160) as usize;
                    bits[p] = !bits[p];
                }
            }
        }
        let mut out = [0u8; 20];
        for (p, &set) in bits.iter().enumerate() {
            if set {
                out[p / 8] |= 1 << (p % 8);
            }
        }
        for (i, b) in (data.len() as u64).to_le_bytes().iter().enumerate() {
            out[12 + i] ^= b;
        }
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn chunking_does_not_matter_and_matches_reference() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let whole = QuickXorHash::of(&data);
        assert_eq!(whole, reference(&data));
        for chunk in [1usize, 3, 7, 159, 160, 161, 1000] {
            let mut h = QuickXorHash::new();
            for c in data.chunks(chunk) {
                h.update(c);
            }
            assert_eq!(h.finish_base64(), whole, "chunk size {chunk}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random contents, lengths and split points (including mid-stripe ones) give the bit-level reference's
        /// digest.
        #[test]
        fn matches_reference_for_any_split(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            splits in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let mut cuts: Vec<usize> = splits.into_iter().map(|s| s.min(data.len())).collect();
            cuts.sort_unstable();
            let mut h = QuickXorHash::new();
            let mut from = 0;
            for cut in cuts {
                h.update(&data[from..cut]);
                from = cut;
            }
            h.update(&data[from..]);
            proptest::prop_assert_eq!(h.len(), data.len() as u64);
            proptest::prop_assert_eq!(h.finish_base64(), reference(&data));
        }

        /// Pieces fed at their offsets in any order give the same digest.
        #[test]
        fn pieces_in_any_order_match_the_reference(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            splits in proptest::collection::vec(0usize..2000, 0..8),
            order_seed in proptest::prelude::any::<u64>(),
        ) {
            let mut cuts: Vec<usize> = splits.into_iter().map(|s| s.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut pieces: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            // A reproducible shuffle.
            let mut x = order_seed | 1;
            for i in (1..pieces.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                pieces.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut h = QuickXorHash::new();
            for (a, b) in pieces {
                h.update_at(a as u64, &data[a..b]);
            }
            h.set_len(data.len() as u64);
            proptest::prop_assert_eq!(h.finish_base64(), reference(&data));
        }
    }
}
