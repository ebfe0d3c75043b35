//! Timestamps inside store keys, encoded so byte order equals numeric order.

use super::StoreError;

pub(crate) const TIME_LEN: usize = 8;

/// Big-endian with the sign bit flipped: negative times sort before positive ones.
pub(crate) fn encode_time(time_ms: i64) -> [u8; TIME_LEN] {
    ((time_ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// Reads a time from the start of `bytes`; short input is an error, since store keys come back
/// from changelogs and must never cause a panic.
pub(crate) fn decode_time(bytes: &[u8]) -> Result<i64, StoreError> {
    let prefix: [u8; TIME_LEN] = bytes
        .get(..TIME_LEN)
        .and_then(|prefix| prefix.try_into().ok())
        .ok_or_else(|| StoreError::new(format!("store key of {} bytes has no timestamp", bytes.len())))?;
    Ok((u64::from_be_bytes(prefix) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_matches_numeric_order() {
        let times = [i64::MIN, -5, -1, 0, 1, 1000, i64::MAX];
        for pair in times.windows(2) {
            assert!(encode_time(pair[0]) < encode_time(pair[1]));
        }
        for time in times {
            assert_eq!(decode_time(&encode_time(time)).unwrap(), time);
        }
        assert!(decode_time(&[1, 2]).is_err());
    }
}
