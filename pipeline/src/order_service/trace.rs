//! W3C Trace Context `traceparent` for the events a request records: the caller's trace is
//! continued when its header is valid, otherwise a new trace starts.

use uuid::Uuid;

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// Continues `incoming` (same trace id and flags, our own span as the parent) if it is a
    /// valid `traceparent`; otherwise starts a new, sampled trace.
    pub fn continue_or_start(incoming: Option<&str>) -> Self {
        match incoming.and_then(parse) {
            Some((trace_id, flags)) => TraceParent(format!("00-{trace_id}-{}-{flags}", new_span_id())),
            None => TraceParent(format!("00-{}-{}-01", Uuid::new_v4().simple(), new_span_id())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn new_span_id() -> String {
    // 16 hex digits from a random UUID; v4 fixes only a few bits, none of them all-zero.
    Uuid::new_v4().simple().to_string()[..16].to_string()
}

/// Trace id and flags of a valid version-00 header (future versions are read the same way, as
/// the spec asks, as long as the first four fields are well formed).
fn parse(header: &str) -> Option<(&str, &str)> {
    let mut fields = header.trim().split('-');
    let (version, trace_id, parent_id, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let well_formed = is_lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && is_lower_hex(trace_id, 32)
        && is_lower_hex(parent_id, 16)
        && is_lower_hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    well_formed.then_some((trace_id, flags))
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(trace: &TraceParent) -> Vec<String> {
        trace.as_str().split('-').map(str::to_string).collect()
    }

    #[test]
    fn a_valid_header_continues_its_trace_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceParent::continue_or_start(Some(incoming));
        let parts = fields(&trace);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(parts[2], "00f067aa0ba902b7");
        assert!(is_lower_hex(&parts[2], 16));
        assert_eq!(parts[3], "01");
    }

    #[test]
    fn missing_or_invalid_headers_start_a_new_trace() {
        for incoming in [
            None,
            Some(""),
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
        ] {
            let trace = TraceParent::continue_or_start(incoming);
            let parts = fields(&trace);
            assert_eq!(parts.len(), 4, "{incoming:?}");
            assert_eq!(parts[0], "00");
            assert!(is_lower_hex(&parts[1], 32) && is_lower_hex(&parts[2], 16), "{incoming:?}");
            assert_ne!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "{incoming:?} must not be continued");
            assert_eq!(parts[3], "01");
        }
    }
}
