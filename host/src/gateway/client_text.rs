//! Text a client chose (such as the body's `model`), as the gateway shows it
//! in its log and in error messages: with control characters and quotes
//! escaped, so it cannot start a log line of its own, and cut short, since a
//! body may carry megabytes of it.

use std::fmt;

/// How many characters of client text are shown; the rest is counted.
const SHOWN_CHARS: usize = 128;

/// Displays client text escaped, at most 128 characters of it.
pub struct ClientText<'a>(pub &'a str);

impl fmt::Display for ClientText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let cut = text.char_indices().nth(SHOWN_CHARS).map(|(at, _)| at);
        for c in text[..cut.unwrap_or(text.len())].chars() {
            write!(f, "{}", c.escape_debug())?;
        }
        if let Some(at) = cut {
            write!(f, "… ({} more bytes)", text.len() - at)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_is_cut() {
        assert_eq!(ClientText("gpt-4o").to_string(), "gpt-4o");
        assert_eq!(ClientText(r#"a"b"#).to_string(), r#"a\"b"#);
        let forged = "x\n2026-01-01 INFO request finished status=200\r\u{1b}[31m";
        let shown = ClientText(forged).to_string();
        assert!(!shown.contains(['\n', '\r', '\u{1b}']), "{shown}");
        assert!(shown.starts_with(r"x\n2026"), "{shown}");
        let long = "é".repeat(1000);
        let shown = ClientText(&long).to_string();
        assert!(
            shown.starts_with(&format!("{}…", "é".repeat(128))),
            "{shown}"
        );
        assert!(shown.ends_with("… (1744 more bytes)"), "{shown}");
    }
}
