//! User DNS records between their text form (API, CLI, ledger) and the wire: record names
//! (exact or `*.` wildcards), values per type, and edgevpn-style regex patterns. The API checks
//! input with these functions before anything reaches the ledger, and the zone builder reads the
//! ledger with the same ones, so both agree on what is valid.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV, TXT};
use hickory_proto::rr::{Name, RData};
use regex::{Regex, RegexBuilder};

use crate::ledger::state::RecordType;

/// The TTL of a user record when none is given.
pub const DEFAULT_TTL: u32 = 60;
/// The largest TTL accepted (one week).
pub const MAX_TTL: u32 = 7 * 24 * 3600;
/// The longest TXT value accepted.
const MAX_TXT: usize = 4000;
/// The longest regex pattern accepted, and the most memory one may compile to.
const MAX_PATTERN: usize = 1024;
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// How deep a pattern's groups and repetitions may nest. The regex crate's default (250)
/// let a 400-byte pattern of repetitions (`x?????…****…`, found by the `api` fuzz target)
/// overflow a 2 MiB thread stack while compiling: a member could abort every node with one.
const PATTERN_NEST_LIMIT: u32 = 32;

/// Why a record, name or pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid DNS name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("invalid {rtype} value {value:?}: {reason}")]
    Value {
        rtype: RecordType,
        value: String,
        reason: String,
    },
    #[error("invalid regex {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("TTL {0} is out of range (0 to {MAX_TTL} seconds)")]
    Ttl(u32),
}

/// A record name in canonical form: lower case, no trailing dot. Labels are 1 to 63 bytes of
/// letters, digits, `-` and `_` (service names like `_k3s._tcp`); the first may be `*` for a
/// wildcard.
pub fn canonical_name(name: &str) -> Result<String, RecordError> {
    let bad = |reason: &str| RecordError::Name {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    if trimmed.len() > 253 {
        return Err(bad("longer than 253 bytes"));
    }
    for (i, label) in trimmed.split('.').enumerate() {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label == "*" {
            if i == 0 {
                continue;
            }
            return Err(bad("`*` is only allowed as the first label"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("labels hold only letters, digits, `-` and `_`"));
        }
    }
    if trimmed == "*" {
        return Err(bad("a wildcard needs a parent name (`*.example`)"));
    }
    Ok(trimmed)
}

/// A canonical name as an absolute wire name.
pub fn wire_name(name: &str) -> Result<Name, RecordError> {
    let mut wire = Name::from_ascii(name).map_err(|e| RecordError::Name {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    wire.set_fqdn(true);
    Ok(wire)
}

/// Checks a value of type `rtype` and returns its canonical text (what the ledger stores).
pub fn canonical_value(rtype: RecordType, value: &str) -> Result<String, RecordError> {
    let data = rdata(rtype, value)?;
    Ok(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::CNAME(cname) => cname.0.to_ascii().trim_end_matches('.').to_string(),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            srv.target.to_ascii().trim_end_matches('.')
        ),
        _ => txt_text(value).to_string(),
    })
}

/// The wire data of a value of type `rtype`.
pub fn rdata(rtype: RecordType, value: &str) -> Result<RData, RecordError> {
    let bad = |reason: String| RecordError::Value {
        rtype,
        value: value.to_string(),
        reason,
    };
    let text = value.trim();
    match rtype {
        RecordType::A => text
            .parse::<Ipv4Addr>()
            .map(|a| RData::A(A(a)))
            .map_err(|_| bad("expected an IPv4 address".into())),
        RecordType::Aaaa => text
            .parse::<Ipv6Addr>()
            .map(|a| RData::AAAA(AAAA(a)))
            .map_err(|_| bad("expected an IPv6 address".into())),
        RecordType::Cname => target(text)
            .map(|n| RData::CNAME(CNAME(n)))
            .map_err(|e| bad(e.to_string())),
        RecordType::Txt => {
            let text = txt_text(value);
            if text.len() > MAX_TXT {
                return Err(bad(format!("longer than {MAX_TXT} bytes")));
            }
            // A TXT record is a list of strings of at most 255 bytes each.
            let mut chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
            if chunks.is_empty() {
                chunks.push(b"");
            }
            Ok(RData::TXT(TXT::from_bytes(chunks)))
        }
        RecordType::Srv => {
            let fields: Vec<&str> = text.split_whitespace().collect();
            let [priority, weight, port, host] = fields[..] else {
                return Err(bad("expected `priority weight port target`".into()));
            };
            let number = |field: &str, what: &str| {
                field
                    .parse::<u16>()
                    .map_err(|_| bad(format!("{what} {field:?} is not a number from 0 to 65535")))
            };
            Ok(RData::SRV(SRV::new(
                number(priority, "priority")?,
                number(weight, "weight")?,
                number(port, "port")?,
                target(host).map_err(|e| bad(e.to_string()))?,
            )))
        }
    }
}

/// A TXT value without one pair of surrounding double quotes (edgevpn writes zone-file text).
fn txt_text(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// A CNAME or SRV target: an exact name.
fn target(text: &str) -> Result<Name, RecordError> {
    let name = canonical_name(text)?;
    if name.starts_with("*.") {
        return Err(RecordError::Name {
            name: text.to_string(),
            reason: "a target cannot be a wildcard".into(),
        });
    }
    wire_name(&name)
}

/// Checks a TTL.
pub fn ttl(ttl: u32) -> Result<u32, RecordError> {
    if ttl > MAX_TTL {
        return Err(RecordError::Ttl(ttl));
    }
    Ok(ttl)
}

/// Compiles an edgevpn-style pattern, anchored at both ends and case-insensitive: `foo`
/// matches the name `foo` and not `xfoo.bar`. The regex engine runs in linear time, and the
/// pattern's size is bounded, so no member can stall the resolver with one.
pub fn pattern(pattern: &str) -> Result<Regex, RecordError> {
    let bad = |reason: String| RecordError::Pattern {
        pattern: pattern.to_string(),
        reason,
    };
    if pattern.is_empty() {
        return Err(bad("empty".into()));
    }
    if pattern.len() > MAX_PATTERN {
        return Err(bad(format!("longer than {MAX_PATTERN} bytes")));
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(true)
        .size_limit(PATTERN_SIZE_LIMIT)
        .nest_limit(PATTERN_NEST_LIMIT)
        .build()
        .map_err(|e| {
            bad(e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_made_canonical() {
        assert_eq!(
            canonical_name("Db.Weft.Internal.").unwrap(),
            "db.weft.internal"
        );
        assert_eq!(canonical_name("*.apps.example").unwrap(), "*.apps.example");
        assert_eq!(
            canonical_name("_k3s._tcp.example").unwrap(),
            "_k3s._tcp.example"
        );
        for bad in [
            "",
            ".",
            "a..b",
            "a.*.b",
            "*",
            "a b.example",
            &"x".repeat(64),
        ] {
            assert!(canonical_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn values_are_checked_per_type() {
        let ok = |t, v| canonical_value(t, v).unwrap();
        assert_eq!(ok(RecordType::A, " 10.1.0.9 "), "10.1.0.9");
        assert_eq!(ok(RecordType::Aaaa, "FD00::1"), "fd00::1");
        assert_eq!(ok(RecordType::Cname, "Host.Example."), "host.example");
        assert_eq!(ok(RecordType::Txt, "\"v=1 x\""), "v=1 x");
        assert_eq!(
            ok(RecordType::Srv, "10  5 6443 n1.weft.internal"),
            "10 5 6443 n1.weft.internal"
        );
        let err = canonical_value(RecordType::A, "10.1.0.300").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid A value \"10.1.0.300\": expected an IPv4 address"
        );
        assert!(canonical_value(RecordType::Cname, "*.x").is_err());
        assert!(canonical_value(RecordType::Srv, "10 5 host").is_err());
        assert!(canonical_value(RecordType::Srv, "10 5 70000 host").is_err());
        assert!(canonical_value(RecordType::Txt, &"x".repeat(5000)).is_err());
    }

    #[test]
    fn long_txt_values_split_into_strings_of_255_bytes() {
        let RData::TXT(txt) = rdata(RecordType::Txt, &"y".repeat(600)).unwrap() else {
            panic!("not TXT");
        };
        let sizes: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(sizes, [255, 255, 90]);
    }

    #[test]
    fn patterns_are_anchored_and_invalid_ones_named() {
        let re = pattern("foo").unwrap();
        assert!(re.is_match("foo") && re.is_match("FOO"));
        assert!(!re.is_match("xfoo.bar") && !re.is_match("foo.bar"));
        let any = pattern(".*\\.svc").unwrap();
        assert!(any.is_match("a.svc") && !any.is_match("a.svc.x"));
        let alternation = pattern("a|b").unwrap();
        assert!(alternation.is_match("a") && !alternation.is_match("ab"));
        let err = pattern("foo(").unwrap_err().to_string();
        assert!(err.starts_with("invalid regex \"foo(\": "), "{err}");
        assert!(pattern("").is_err());
    }

    #[test]
    fn a_deeply_nested_pattern_is_refused_on_a_small_stack_not_a_crash() {
        let deep = format!("x{}", "?*".repeat(200));
        let compiled = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || pattern(&deep).map(|_| ()))
            .unwrap()
            .join()
            .expect("the compiling thread ends");
        let err = compiled.unwrap_err().to_string();
        assert!(err.contains("nested"), "{err}");
    }
}
