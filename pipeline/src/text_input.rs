//! Checks on text that arrives in URLs, query strings and bodies, before it reaches a database:
//! PostgreSQL refuses a NUL byte in text and in jsonb (an error that would surface as a 500).

/// `Err` with a message naming `what` when `text` holds control characters (NUL included).
pub fn printable(what: &str, text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

/// Text a person writes (a note, a reason, who acts): not blank, at most `max_len` bytes, and no
/// NUL; other control characters (a line break) are fine. `Err` names `what`.
pub fn free_text(what: &str, text: &str, max_len: usize) -> Result<(), String> {
    if text.trim().is_empty() || text.len() > max_len || text.contains('\0') {
        return Err(format!("{what} must be 1 to {max_len} bytes of text, not blank"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_not_blank_bounded_and_without_nul() {
        assert_eq!(free_text("note", "fixed it\nby hand", 20), Ok(()));
        assert_eq!(free_text("note", " \t", 20), Err("note must be 1 to 20 bytes of text, not blank".to_owned()));
        assert!(free_text("note", "a\0b", 20).is_err());
        assert!(free_text("note", &"x".repeat(21), 20).is_err());
    }

    #[test]
    fn control_characters_are_refused_with_the_field_named() {
        assert_eq!(printable("order id", "o-1 ü"), Ok(()));
        assert_eq!(printable("order id", "a\0b"), Err("order id must not contain control characters".to_owned()));
        assert!(printable("customer_id", "\u{1f}").is_err());
    }
}
