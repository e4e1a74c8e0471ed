//! Reading a token's claims: the claims object (duplicate names refused), a primitive claim's
//! header value, a `claim_to_headers` value. Uses only serde and serde_json.

use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The claims object, refusing duplicate member names (RFC 7519 §4: a JWT with duplicate claim
/// names must be rejected; parsers disagree on which copy wins).
pub(crate) struct Claims(pub(crate) Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Claims, A::Error> {
                let mut m = Map::new();
                while let Some(k) = a.next_key::<String>()? {
                    let v: Value = a.next_value()?;
                    if m.insert(k, v).is_some() {
                        return Err(A::Error::custom("duplicate claim"));
                    }
                }
                Ok(Claims(m))
            }
        }
        d.deserialize_map(V)
    }
}

/// The header value of a primitive claim (string, number, bool); `None` for others.
pub(crate) fn primitive(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `claim_to_headers` value of the claim at `path` (member names through objects):
/// a string, number or boolean as it is (numbers and booleans as their JSON text), a list of
/// strings joined with `,`. `Ok(None)`, no header: the claim is absent, `null`, an object, an
/// empty list or a list holding anything but strings. `Err`, the token is malformed: the value
/// cannot go into a header unchanged (a control character such as CR or LF, tab excepted), a
/// list element that would not read back as itself (empty, holding a `,`, or with spaces or
/// tabs at its ends), or a value longer than `max` bytes.
pub(crate) fn claim_header_value(
    claims: &Map<String, Value>,
    path: &[String],
    max: usize,
) -> Result<Option<String>, ()> {
    let mut names = path.iter();
    let mut v = names.next().and_then(|n| claims.get(n));
    for n in names {
        v = v.and_then(Value::as_object).and_then(|o| o.get(n));
    }
    let text = match v {
        Some(Value::Array(list)) => {
            if list.is_empty() || !list.iter().all(Value::is_string) {
                return Ok(None);
            }
            let mut out = String::new();
            for (i, item) in list.iter().filter_map(Value::as_str).enumerate() {
                let bare = item.trim_matches([' ', '\t']);
                if bare.is_empty() || bare.len() != item.len() || item.contains(',') {
                    return Err(());
                }
                if i > 0 {
                    out.push(',');
                }
                out.push_str(item);
                if out.len() > max {
                    return Err(());
                }
            }
            out
        }
        Some(other) => match primitive(other) {
            Some(text) => text,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    if text.len() > max || text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(());
    }
    Ok(Some(text))
}
