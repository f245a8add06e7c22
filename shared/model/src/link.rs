//! The `rel="next"` target of an RFC 8288 `Link` header (`<url>; rel="next", <url>; rel="prev"`):
//! how GitHub's API, Harbor's, ACR's and the OCI distribution API page their lists.

/// The target of the `rel="next"` link in `value`, as written (absolute or relative).
pub fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        let cases = [
            (
                r#"<https://api.example/x?page=2>; rel="next", <https://api.example/x?page=9>; rel="last""#,
                Some("https://api.example/x?page=2"),
            ),
            (r#"</v2/a/tags/list?last=x&n=1>; rel=next"#, Some("/v2/a/tags/list?last=x&n=1")),
            (r#"<https://api.example/x?page=1>; rel="prev""#, None),
            ("garbage", None),
        ];
        for (value, expected) in cases {
            assert_eq!(next_link(value).as_deref(), expected, "{value}");
        }
    }
}
