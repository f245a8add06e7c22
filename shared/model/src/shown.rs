//! Text from outside, made safe to print.
//!
//! Tags, repository names, paths, registry error bodies and webhook fields come from people and
//! programs Ferry does not control. Printed raw, a control character can move the cursor,
//! recolour a terminal, or forge a line of a listing (a newline followed by a fake
//! `promoted` line), and a right-to-left override can make a name read as another. Every such
//! string is printed through this one helper: control characters and Unicode format characters
//! (bidirectional overrides, zero-width characters, the byte-order mark) are written as Rust's
//! `escape_debug` writes them (`\n`, `\u{1b}`, `\u{202e}`), and bytes that are not UTF-8 (in
//! paths) as `\xNN`. Everything else, quotes, backslashes and non-ASCII letters included, is left
//! as it is, so ordinary text reads unchanged.
//!
//! Escaping is idempotent: what it writes contains nothing it would escape again. So text can
//! be escaped where outside strings enter a message (a registry's error body, an archive's entry
//! name) and again where it is printed, without `\u{1b}` turning into `\\u{1b}`.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::Path;

/// Whether `c` must not reach a terminal or a log line as itself.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// `text` with every character that could change what a reader sees escaped.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(must_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    push_escaped(&mut out, text);
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if must_escape(c) {
            // `escape_debug` writes `\n`, `\t` and `\u{..}`; quotes are left alone here.
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
}

/// Bytes that should be text (a path from git, a name from an archive): valid UTF-8 escaped as
/// [`escaped`] does, every other byte as `\xNN`.
pub fn escaped_bytes(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => escaped(text),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                push_escaped(&mut out, chunk.valid());
                for byte in chunk.invalid() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

/// A path, losslessly: a name that is not UTF-8 keeps every byte, as `\xNN`.
pub fn escaped_path(path: &Path) -> Cow<'_, str> {
    escaped_bytes(path.as_os_str().as_encoded_bytes())
}

/// Whether a name (a file name, a path component) can be printed and named as it is: UTF-8
/// with nothing [`escaped`] would change. Ferry names files in `file:line` places, check run
/// annotations and links; a name it cannot write back exactly is reported, not read.
pub fn is_plain_name(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| !text.chars().any(must_escape))
}

/// Multi-line text (a report, an error listing several problems) with each line escaped: the
/// line breaks stay, every other control character is shown. A newline that outside text
/// smuggles into one line must be escaped where that text enters the line ([`escaped`]).
pub fn escaped_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && must_escape(c)) {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(escaped).collect();
    Cow::Owned(lines.join("\n"))
}

/// `Display` of outside text through [`escaped`]: `format!("{}", Shown(tag))`.
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escaped(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_escaped_and_what_is_not() {
        for (input, shown) in [
            ("v1.2.3", "v1.2.3"),
            ("don't \"quote\"", "don't \"quote\""),
            ("naïve café 日本", "naïve café 日本"),
            ("a\nb", "a\\nb"),
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("nul\0byte", "nul\\0byte"),
            ("tab\there", "tab\\there"),
            ("cr\rreturn", "cr\\rreturn"),
            ("back\\slash", "back\\slash"),
            ("evil\u{202e}gnp.exe", "evil\\u{202e}gnp.exe"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("\u{feff}bom", "\\u{feff}bom"),
            ("del\u{7f}", "del\\u{7f}"),
            ("c1\u{85}", "c1\\u{85}"),
        ] {
            assert_eq!(escaped(input), shown, "{input:?}");
            assert_eq!(Shown(input).to_string(), shown, "{input:?}");
            assert_eq!(escaped(shown), shown, "escaping is idempotent: {shown:?}");
        }
        assert_eq!(escaped_lines("one\ntwo \u{1b}[2J\n"), "one\ntwo \\u{1b}[2J\n");
        assert_eq!(escaped_lines("plain\nlines"), "plain\nlines");
    }

    #[test]
    fn bytes_that_are_not_utf8_keep_every_byte() {
        assert_eq!(escaped_bytes(b"images/ok"), "images/ok");
        assert_eq!(escaped_bytes(b"images/\xff\xfeab"), "images/\\xff\\xfeab");
        assert_eq!(escaped_bytes(b"a\xc3"), "a\\xc3");
        assert_eq!(escaped_bytes("é\n\u{80}".as_bytes()), "é\\n\\u{80}");
        assert!(is_plain_name(b"kops"));
        assert!(is_plain_name("café".as_bytes()));
        assert!(!is_plain_name(b"\xff"));
        assert!(!is_plain_name(b"a\nb"));
    }
}
