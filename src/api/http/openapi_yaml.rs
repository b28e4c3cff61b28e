//! The OpenAPI document as YAML that YAML 1.1 readers (PyYAML, many code
//! generators) read as YAML 1.2 ones do: the emitter writes the strings
//! `no`, `yes`, `on`, `off`, `y` and `n` unquoted, which YAML 1.1 reads as
//! booleans (`enum: [epoch, steps, no]` would hold `false`). Every plain
//! scalar of that kind is quoted here; block scalars (multi-line
//! descriptions) are left alone.

/// Plain scalars YAML 1.1 reads as booleans (`true` and `false` are already
/// quoted when they are strings: YAML 1.2 reads them as booleans too).
const YAML11_BOOLEANS: [&str; 16] = [
    "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// The document `super::openapi()` describes, as YAML 1.1-safe text.
pub fn openapi_yaml() -> String {
    let yaml = super::openapi()
        .to_yaml()
        .expect("the OpenAPI document serialises");
    quote_yaml11_booleans(&yaml)
}

/// Quotes the plain scalars in `yaml` (a block-style document as
/// `serde_norway` writes it: one key or item a line) that YAML 1.1 reads as
/// booleans.
pub(crate) fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 64);
    // The indentation of the key or item that opened the block scalar being
    // read (a `- ` before it counted): its lines start with more spaces.
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let (indent, rest) = split_indent(line);
        let spaces = line.len() - line.trim_start_matches(' ').len();
        match block {
            Some(opener) if rest.is_empty() || spaces > opener => {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            _ => block = None,
        }
        let fixed = quote_line(&line[..line.len() - rest.len()], rest);
        if opens_block(rest) {
            block = Some(indent);
        }
        out.push_str(&fixed);
        out.push('\n');
    }
    out
}

/// Whether a line's value is a block scalar's header (`|`, `|-`, `>2`, …).
fn opens_block(rest: &str) -> bool {
    let value = rest.rsplit_once(": ").map_or(rest, |(_, v)| v);
    let mut chars = value.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '-' | '+' | '1'..='9'))
}

/// A line's indentation, counting the `- ` of sequence items, and the rest.
fn split_indent(line: &str) -> (usize, &str) {
    let mut rest = line.trim_start_matches(' ');
    while let Some(after) = rest.strip_prefix("- ") {
        rest = after.trim_start_matches(' ');
    }
    if rest == "-" {
        rest = "";
    }
    (line.len() - rest.len(), rest)
}

/// `prefix` + `rest`, the key and the value of `rest` quoted where they are
/// YAML 1.1 booleans.
fn quote_line(prefix: &str, rest: &str) -> String {
    let quote = |s: &str| match YAML11_BOOLEANS.contains(&s) {
        true => format!("'{s}'"),
        false => s.to_string(),
    };
    // A key is quoted by the emitter when it holds `: `, so the first one
    // outside quotes ends a plain key.
    let split = match rest.starts_with(['\'', '"']) {
        true => None,
        false => rest
            .find(": ")
            .map(|i| (&rest[..i], &rest[i + 2..]))
            .or_else(|| rest.strip_suffix(':').map(|k| (k, ""))),
    };
    match split {
        Some((key, "")) => format!("{prefix}{}:", quote(key)),
        Some((key, value)) => format!("{prefix}{}: {}", quote(key), quote(value)),
        None => format!("{prefix}{}", quote(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::quote_yaml11_booleans;

    #[test]
    fn yaml11_booleans_are_quoted_outside_block_scalars() {
        let yaml = "\
enum:
- epoch
- no
default: no
no: 1
on:
  - yes
text: |-
  no
  - off
- description: |-
    said no
  name: off
other: 'no'
";
        let expected = "\
enum:
- epoch
- 'no'
default: 'no'
'no': 1
'on':
  - 'yes'
text: |-
  no
  - off
- description: |-
    said no
  name: 'off'
other: 'no'
";
        assert_eq!(quote_yaml11_booleans(yaml), expected);
    }
}
