//! quickXorHash, OneDrive's content hash (the only hash guaranteed on Personal and Business).
//!
//! A 160-bit register; the byte at absolute offset `i` is rotated left by `(11·i) mod 160` bits and XORed in;
//! at the end the total length (64-bit little endian) is XORed into bytes 12..20 and the 20 bytes are base64
//! encoded. Streaming: only the absolute offset matters, so `update` can be called with any chunking.

use base64::Engine;

const WIDTH_BITS: u64 = 160;
const SHIFT: u64 = 11;

/// Streaming quickXorHash state.
#[derive(Clone, Debug)]
pub struct QuickXorHash {
    /// The register as 20 bytes; bit `p` is bit `p % 8` of byte `p / 8`.
    register: [u8; 20],
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
            register: [0; 20],
            length: 0,
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, data: &[u8]) {
        // Bytes whose offsets are congruent mod 160 land at the same rotation, so fold per 160-byte stripe:
        // the rotation for offset i is (11*i) mod 160; since gcd(11,160)=1 the pattern repeats every 160 bytes.
        let mut bit = (self.length.wrapping_mul(SHIFT)) % WIDTH_BITS;
        for &b in data {
            let byte_index = (bit / 8) as usize;
            let bit_in_byte = (bit % 8) as u32;
            let v = (b as u16) << bit_in_byte;
            self.register[byte_index] ^= v as u8;
            let hi = (v >> 8) as u8;
            if hi != 0 {
                let next = if byte_index == 19 { 0 } else { byte_index + 1 };
                self.register[next] ^= hi;
            }
            bit = (bit + SHIFT) % WIDTH_BITS;
        }
        self.length = self.length.wrapping_add(data.len() as u64);
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
        let mut out = self.register;
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
}
