//! Checks on identifiers that arrive in URLs and query strings, before they reach a database:
//! PostgreSQL refuses a NUL byte in text (an error that would surface as a 500).

/// `Err` with a message naming `what` when `text` holds control characters (NUL included).
pub fn printable(what: &str, text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_with_the_field_named() {
        assert_eq!(printable("order id", "o-1 ü"), Ok(()));
        assert_eq!(printable("order id", "a\0b"), Err("order id must not contain control characters".to_owned()));
        assert!(printable("customer_id", "\u{1f}").is_err());
    }
}
