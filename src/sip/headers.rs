//! The lossless header list of a SIP message.
//!
//! Every header row is kept in order with its name as received and its raw
//! text, so that a message we only read is printed back byte for byte.
//! Typed views (Via, CSeq, From/To, ...) are parsed on demand from the
//! unfolded value. Names compare case-insensitively and compact forms are
//! equivalent to their long forms (RFC 3261 §7.3.1, §7.3.3, §20).

/// One header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as received (or as we wrote it), e.g. `v` or `Via`.
    pub name: String,
    /// The value with folding (CRLF followed by whitespace) replaced by a single
    /// space and surrounding whitespace trimmed (RFC 3261 §7.3.1).
    pub value: String,
    /// The row exactly as received, including continuation lines but without
    /// the final CRLF. `None` once we build or change the header.
    raw: Option<String>,
}

impl Header {
    /// A header we create; it is printed as `Name: value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
            raw: None,
        }
    }

    /// A header as received, printed back as `raw`.
    pub(crate) fn received(name: String, value: String, raw: String) -> Header {
        Header {
            name,
            value,
            raw: Some(raw),
        }
    }

    /// The long form of this header's name (`v` → `Via`).
    pub fn canonical_name(&self) -> &str {
        canonical_name(&self.name)
    }

    /// Whether this row is the header `name` (either form, any case).
    pub fn is(&self, name: &str) -> bool {
        self.canonical_name()
            .eq_ignore_ascii_case(canonical_name(name))
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        match &self.raw {
            Some(raw) => out.extend_from_slice(raw.as_bytes()),
            None => {
                out.extend_from_slice(self.name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(self.value.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The compact forms of RFC 3261 §7.3.3 / §20 and later RFCs.
const COMPACT: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("n", "Identity-Info"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

/// Maps a compact header name to its long form; other names are returned as is.
pub fn canonical_name(name: &str) -> &str {
    if name.len() == 1 {
        let lower = name.to_ascii_lowercase();
        if let Some((_, long)) = COMPACT.iter().find(|(c, _)| *c == lower) {
            return long;
        }
    }
    name
}

/// The ordered list of header rows of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    rows: Vec<Header>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// All rows, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.rows.iter()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The value of the first row named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.rows
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_str())
    }

    /// The values of every row named `name`, one per row.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rows
            .iter()
            .filter(move |h| h.is(name))
            .map(|h| h.value.as_str())
    }

    /// How many rows are named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.rows.iter().filter(|h| h.is(name)).count()
    }

    /// The elements of a comma-separated list header, over all of its rows
    /// (RFC 3261 §7.3.1: several rows are equivalent to one row with the
    /// values joined by commas). Commas inside quotes or `<...>` do not split.
    pub fn list<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        self.get_all(name).flat_map(split_list).collect()
    }

    /// Appends a row.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.rows.push(Header::new(name, value));
    }

    pub(crate) fn push_header(&mut self, header: Header) {
        self.rows.push(header);
    }

    /// Inserts a row before all others (used for Via, RFC 3261 §8.1.1.7).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.rows.insert(0, Header::new(name, value));
    }

    /// Replaces the first row named `name` (keeping its position) and removes
    /// the others; appends if there is none.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.rows.iter().position(|h| h.is(name)) {
            Some(i) => {
                let long = canonical_name(name).to_string();
                self.rows[i] = Header::new(long, value);
                let mut seen = 0;
                self.rows.retain(|h| {
                    if h.is(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.push(canonical_name(name).to_string(), value),
        }
    }

    /// Removes every row named `name`.
    pub fn remove(&mut self, name: &str) {
        self.rows.retain(|h| !h.is(name));
    }

    /// Removes the first element of a list header (e.g. the top Via value),
    /// splitting a row that holds several values.
    pub fn remove_first_value(&mut self, name: &str) {
        let Some(i) = self.rows.iter().position(|h| h.is(name)) else {
            return;
        };
        let parts: Vec<String> = split_list(&self.rows[i].value)
            .into_iter()
            .map(str::to_string)
            .collect();
        if parts.len() <= 1 {
            self.rows.remove(i);
        } else {
            let name = self.rows[i].name.clone();
            self.rows[i] = Header::new(name, parts[1..].join(", "));
        }
    }

    /// Copies every row named `name` from `other`, in order, appending them.
    pub fn copy_from(&mut self, other: &Headers, name: &str) {
        for h in other.rows.iter().filter(|h| h.is(name)) {
            self.rows.push(h.clone());
        }
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for h in &self.rows {
            h.write_to(out);
        }
    }
}

/// Splits a list header value at top-level commas, trimming each element and
/// skipping empty ones. Quoted strings (with quoted-pairs) and `<...>` are
/// kept whole (RFC 3261 §7.3.1, §25.1).
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                push_trimmed(&mut out, &value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push_trimmed(&mut out, &value[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let t = s.trim();
    if !t.is_empty() {
        out.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_names_are_the_same_header_rfc3261_7_3_3() {
        let mut h = Headers::new();
        h.push("v", "SIP/2.0/UDP a;branch=z9hG4bK1");
        h.push("VIA", "SIP/2.0/UDP b;branch=z9hG4bK2");
        assert_eq!(h.count("Via"), 2);
        assert_eq!(h.get("via"), Some("SIP/2.0/UDP a;branch=z9hG4bK1"));
    }

    #[test]
    fn list_splits_rows_and_commas_but_not_quotes_or_brackets_rfc3261_7_3_1() {
        let mut h = Headers::new();
        h.push("Contact", "\"a, b\" <sip:a@x;p=1,2>, <sip:b@y>");
        h.push("m", "sip:c@z");
        assert_eq!(
            h.list("Contact"),
            vec!["\"a, b\" <sip:a@x;p=1,2>", "<sip:b@y>", "sip:c@z"]
        );
    }

    #[test]
    fn remove_first_value_splits_a_row_holding_two_vias() {
        let mut h = Headers::new();
        h.push(
            "Via",
            "SIP/2.0/UDP a;branch=z9hG4bK1,SIP/2.0/TCP b;branch=z9hG4bK2",
        );
        h.remove_first_value("Via");
        assert_eq!(h.list("Via"), vec!["SIP/2.0/TCP b;branch=z9hG4bK2"]);
    }

    #[test]
    fn set_replaces_in_place_and_drops_duplicates() {
        let mut h = Headers::new();
        h.push("A", "1");
        h.push("Content-Length", "5");
        h.push("B", "2");
        h.push("l", "7");
        h.set("Content-Length", "0");
        let names: Vec<_> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["A", "Content-Length", "B"]);
        assert_eq!(h.get("l"), Some("0"));
    }
}
