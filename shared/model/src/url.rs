//! Percent-encoding of names put into URLs: every byte but RFC 3986's unreserved characters
//! (`A-Z a-z 0-9 - . _ ~`), so that `#`, `?`, `%`, `/` or a space in a name cannot change what is
//! asked for.

/// One path segment or query value: `/` is encoded too (`a/b` → `a%2Fb`).
pub fn component(value: &str) -> String {
    encode(value, false)
}

/// A path: each segment encoded, its `/` kept (`ns/my repo` → `ns/my%20repo`).
pub fn path(value: &str) -> String {
    encode(value, true)
}

fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded() {
        assert_eq!(component("a/b"), "a%2Fb");
        assert_eq!(component(&component("a/b")), "a%252Fb", "twice, as Harbor wants");
        assert_eq!(component("application/vnd.oci+json"), "application%2Fvnd.oci%2Bjson");
        assert_eq!(path("ns/my repo#1"), "ns/my%20repo%231");
        assert_eq!(path("a-b.c_d~e/f"), "a-b.c_d~e/f");
    }
}
