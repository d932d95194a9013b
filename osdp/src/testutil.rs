//! Helpers shared by the unit tests of this crate.

/// Every code 0..=255 with payloads of 0 to 64 bytes in four fills: zeros,
/// 0xFF, small values (plausible headers) and xorshift noise from `seed`.
pub(crate) fn payloads(seed: u64) -> impl Iterator<Item = (u8, Vec<u8>)> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let mut out = Vec::new();
    for code in 0..=u8::MAX {
        for len in 0..=64usize {
            for fill in 0..4 {
                let data: Vec<u8> = (0..len)
                    .map(|i| match fill {
                        0 => 0,
                        1 => 0xFF,
                        2 => (i as u8) % 3,
                        _ => next(),
                    })
                    .collect();
                out.push((code, data));
            }
        }
    }
    out.into_iter()
}
