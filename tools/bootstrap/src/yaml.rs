//! YAML text helpers of the generator: quoting, indenting, list items. Uses only serde_json.

/// A YAML double-quoted scalar for any text. JSON strings are valid YAML double-quoted scalars,
/// so serde_json's escaping is used: no hand-written escaping bugs.
pub fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Indents every non-empty line of `yaml` by `n` spaces; ends with a newline.
pub fn indent(yaml: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut out = String::new();
    for line in yaml.lines() {
        if !line.trim().is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `yaml` (a mapping) as one item of a YAML list indented by `n`.
pub fn list_item(yaml: &str, n: usize) -> String {
    let body = indent(yaml.trim_start_matches('\n'), n + 2);
    let pad = " ".repeat(n);
    let prefix = format!("{pad}  ");
    match body.strip_prefix(&prefix) {
        Some(rest) => format!("{pad}- {rest}"),
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_str_escapes_like_json() {
        assert_eq!(yaml_str(r#"{"a":"b\c"}"#), r#""{\"a\":\"b\\c\"}""#);
        assert_eq!(yaml_str("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn list_item_prefixes_first_line_only() {
        assert_eq!(
            list_item("name: a\ntype: STATIC\n", 2),
            "  - name: a\n    type: STATIC\n"
        );
    }

    #[test]
    fn indent_keeps_blank_lines_blank() {
        assert_eq!(indent("a: 1\n\nb: 2", 4), "    a: 1\n\n    b: 2\n");
    }
}
