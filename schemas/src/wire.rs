//! The Confluent wire format: magic byte 0, the schema id as 4 big-endian bytes, the Avro body.

/// First byte of every framed record.
pub const MAGIC_BYTE: u8 = 0;

/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

/// Bytes that are not a Confluent-framed record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{len} bytes are too short for the Confluent wire format, which starts with a {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error(
        "first byte is {found:#04x}, not the Confluent magic byte {MAGIC_BYTE:#04x}; not a registry-framed record"
    )]
    BadMagicByte { found: u8 },
}

/// Frames an Avro body with the id the registry gave its writer schema.
pub fn to_wire(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(HEADER_LEN + body.len());
    framed.push(MAGIC_BYTE);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(body);
    framed
}

/// Splits framed bytes into the writer schema id and the Avro body.
pub fn parse_wire(bytes: &[u8]) -> Result<(u32, &[u8]), WireError> {
    let Some((&[magic, id0, id1, id2, id3], body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::TooShort { len: bytes.len() });
    };
    if magic != MAGIC_BYTE {
        return Err(WireError::BadMagicByte { found: magic });
    }
    Ok((u32::from_be_bytes([id0, id1, id2, id3]), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_bytes_parse_back_to_id_and_body() {
        let framed = to_wire(0x0102_0304, b"avro");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'a', b'v', b'r', b'o']);
        assert_eq!(parse_wire(&framed), Ok((0x0102_0304, &b"avro"[..])));
    }

    #[test]
    fn an_empty_body_and_the_largest_id_are_valid() {
        let framed = to_wire(u32::MAX, &[]);
        assert_eq!(parse_wire(&framed), Ok((u32::MAX, &[][..])));
    }

    #[test]
    fn short_input_is_refused() {
        for len in 0..HEADER_LEN {
            assert_eq!(parse_wire(&vec![0; len]), Err(WireError::TooShort { len }));
        }
    }

    #[test]
    fn a_wrong_magic_byte_is_refused() {
        assert_eq!(parse_wire(&[1, 0, 0, 0, 7, 42]), Err(WireError::BadMagicByte { found: 1 }));
        assert_eq!(parse_wire(b"{\"json\": true}"), Err(WireError::BadMagicByte { found: b'{' }));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic byte generator (xorshift) instead of a fuzzing dependency.
        let mut state: u32 = 0x9e37_79b9;
        for len in 0..64 {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            match parse_wire(&garbage) {
                Ok((id, body)) => {
                    assert_eq!(garbage[0], MAGIC_BYTE);
                    assert_eq!(to_wire(id, body), garbage);
                }
                Err(WireError::TooShort { len }) => assert!(len < HEADER_LEN),
                Err(WireError::BadMagicByte { found }) => assert_ne!(found, MAGIC_BYTE),
            }
        }
    }
}
