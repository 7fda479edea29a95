//! The network token: the one shared secret that makes machines members of the same mesh.
//!
//! Two kinds are accepted anywhere a token is: weft's own *native* token (versioned, base64url,
//! a 32-byte CSPRNG secret plus optional network settings) and an unchanged *edgevpn* token
//! (base64 of a YAML document, or that YAML itself when read from a file), so existing Kairos
//! cloud-configs keep working. Whatever the kind, every key the mesh uses comes out of one
//! HKDF-SHA256 extraction over the token's secret material, expanded with a distinct label per
//! purpose ([`NetworkKeys`]). The secret itself is never printed: [`Token::describe`] shows only
//! what is safe to share.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use ipnet::Ipv4Net;
use libp2p::Multiaddr;
use prost::Message as _;
use rand::RngCore as _;
use serde::Serialize;
use sha2::Sha256;

use crate::proto::token::v1::NetworkToken;

/// First bytes of a decoded native token.
const NATIVE_MAGIC: &[u8; 4] = b"WEFT";
/// How every native token's text starts: base64url of [`NATIVE_MAGIC`] and the version's top bits.
const NATIVE_PREFIX: &str = "V0VGV";
/// The native token format this build writes and reads.
pub const NATIVE_VERSION: u8 = 1;
/// Length of the native token's secret.
const SECRET_LEN: usize = 32;
/// Rendezvous epoch of native tokens that do not set one.
pub const DEFAULT_EPOCH_SECS: u64 = 3600;

/// HKDF salts: one per token kind, so equal input bytes of different kinds never share keys.
const SALT_NATIVE: &[u8] = b"weft network token v1";
const SALT_EDGEVPN: &[u8] = b"weft edgevpn token v1";

/// HKDF `info` labels, one per derived key.
const LABEL_NETWORK_ID: &[u8] = b"weft/network-id";
const LABEL_ADMISSION: &[u8] = b"weft/admission";
const LABEL_LEDGER_SEAL: &[u8] = b"weft/ledger-seal";
const LABEL_DATAPLANE: &[u8] = b"weft/dataplane";
const LABEL_MDNS: &[u8] = b"weft/mdns";
const LABEL_RENDEZVOUS: &[u8] = b"weft/rendezvous/";

/// Why a token was refused. Every variant names the part of the token that is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("invalid token: the token is empty")]
    Empty,
    #[error("invalid token: not valid base64 ({0})")]
    BadBase64(String),
    #[error(
        "invalid token: native token version {0} is not supported (this weft reads version {NATIVE_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("invalid token: native token body is corrupt ({0})")]
    CorruptBody(String),
    #[error("invalid token: native token secret must be {SECRET_LEN} bytes, got {0}")]
    SecretLength(usize),
    #[error("invalid token: setting {field} is invalid: {reason}")]
    BadSetting { field: &'static str, reason: String },
    #[error(
        "invalid token: neither a native weft token nor an edgevpn token (decoded bytes are not YAML: {0})"
    )]
    NotYaml(String),
    #[error("invalid token: edgevpn token is missing field {0}")]
    MissingField(String),
    #[error("invalid token: field {field} must be {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: String,
    },
}

/// A parsed network token of either kind.
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    Native(NativeToken),
    Edgevpn(EdgevpnToken),
}

/// weft's own token: a secret and the network settings it carries.
#[derive(Clone, PartialEq, Eq)]
pub struct NativeToken {
    secret: [u8; SECRET_LEN],
    /// Overlay pool every member uses unless configured otherwise.
    pub cidr: Option<Ipv4Net>,
    /// Multiaddrs every member dials at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Length of a DHT rendezvous epoch.
    pub epoch_secs: u64,
}

/// An edgevpn token (the YAML `otp`/`room`/`rendezvous`/`mdns` document), kept as given.
#[derive(Clone, PartialEq, Eq)]
pub struct EdgevpnToken {
    dht_key: String,
    crypto_key: String,
    room: String,
    mdns: String,
    rendezvous: Option<String>,
    /// `otp.dht.interval` in seconds; `u64::MAX` (what Kairos writes) means "never rotate".
    pub dht_interval: u64,
    /// `otp.crypto.interval` in seconds.
    pub crypto_interval: u64,
    /// `max_message_size` in bytes, when given.
    pub max_message_size: Option<u64>,
}

impl NativeToken {
    /// A new token with a fresh secret from the operating system's CSPRNG.
    pub fn generate(cidr: Option<Ipv4Net>, bootstrap: Vec<Multiaddr>, epoch_secs: u64) -> Self {
        let mut secret = [0u8; SECRET_LEN];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        NativeToken {
            secret,
            cidr,
            bootstrap,
            epoch_secs,
        }
    }

    /// Builds a token from known secret bytes (test vectors, recovery tooling).
    pub fn from_secret(secret: [u8; SECRET_LEN]) -> Self {
        NativeToken {
            secret,
            cidr: None,
            bootstrap: Vec::new(),
            epoch_secs: DEFAULT_EPOCH_SECS,
        }
    }

    /// The token's text form: base64url of magic, version byte and the protobuf body.
    pub fn encode(&self) -> String {
        let body = NetworkToken {
            secret: self.secret.to_vec(),
            cidr: self.cidr.map(|c| c.to_string()).unwrap_or_default(),
            bootstrap: self.bootstrap.iter().map(ToString::to_string).collect(),
            rendezvous_epoch_secs: if self.epoch_secs == DEFAULT_EPOCH_SECS {
                0
            } else {
                self.epoch_secs
            },
        };
        let mut bytes = Vec::with_capacity(NATIVE_MAGIC.len() + 1 + body.encoded_len());
        bytes.extend_from_slice(NATIVE_MAGIC);
        bytes.push(NATIVE_VERSION);
        body.encode(&mut bytes)
            .expect("a Vec grows to hold any protobuf message");
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Self, TokenError> {
        let version = *bytes
            .get(NATIVE_MAGIC.len())
            .ok_or_else(|| TokenError::CorruptBody("no version byte".into()))?;
        if version != NATIVE_VERSION {
            return Err(TokenError::UnsupportedVersion(version));
        }
        let body = NetworkToken::decode(&bytes[NATIVE_MAGIC.len() + 1..])
            .map_err(|e| TokenError::CorruptBody(e.to_string()))?;
        let secret: [u8; SECRET_LEN] = body
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| TokenError::SecretLength(body.secret.len()))?;
        let cidr = if body.cidr.is_empty() {
            None
        } else {
            Some(body.cidr.parse().map_err(|_| TokenError::BadSetting {
                field: "cidr",
                reason: format!("{:?} is not an IPv4 network", body.cidr),
            })?)
        };
        let bootstrap = body
            .bootstrap
            .iter()
            .map(|a| {
                a.parse().map_err(|e| TokenError::BadSetting {
                    field: "bootstrap",
                    reason: format!("{a:?} is not a multiaddr: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        let epoch_secs = match body.rendezvous_epoch_secs {
            0 => DEFAULT_EPOCH_SECS,
            secs => secs,
        };
        Ok(NativeToken {
            secret,
            cidr,
            bootstrap,
            epoch_secs,
        })
    }
}

impl Token {
    /// Parses a token of either kind. Surrounding whitespace is ignored; an edgevpn token may be
    /// given base64-encoded (as in `EDGEVPNTOKEN`) or as the YAML itself (as in a config file).
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.starts_with(NATIVE_PREFIX) {
            let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|e| {
                TokenError::BadBase64(format!("native token: {}", base64_problem(&e)))
            })?;
            return NativeToken::decode(&bytes).map(Token::Native);
        }
        // A base64 token may have been wrapped by a YAML or env file editor.
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        match STANDARD.decode(&compact) {
            Ok(bytes) => {
                let yaml = String::from_utf8(bytes).map_err(|_| {
                    TokenError::NotYaml("decoded bytes are not UTF-8 text".to_string())
                })?;
                edgevpn::parse(&yaml).map(Token::Edgevpn)
            }
            Err(_) if looks_like_yaml_mapping(text) => edgevpn::parse(text).map(Token::Edgevpn),
            Err(e) => Err(TokenError::BadBase64(base64_problem(&e))),
        }
    }

    /// `native` or `edgevpn`.
    pub fn kind(&self) -> &'static str {
        match self {
            Token::Native(_) => "native",
            Token::Edgevpn(_) => "edgevpn",
        }
    }

    /// Every key the mesh derives from this token.
    pub fn keys(&self) -> NetworkKeys {
        match self {
            Token::Native(t) => NetworkKeys::derive(SALT_NATIVE, &t.secret, t.epoch_secs),
            Token::Edgevpn(t) => {
                let mut ikm = Vec::new();
                for part in [&t.crypto_key, &t.dht_key, &t.room, &t.mdns] {
                    // Length-prefixed so that moving bytes between fields changes the keys.
                    ikm.extend_from_slice(&(part.len() as u32).to_be_bytes());
                    ikm.extend_from_slice(part.as_bytes());
                }
                NetworkKeys::derive(SALT_EDGEVPN, &ikm, t.dht_interval)
            }
        }
    }

    /// The network's overlay pool, when the token carries one.
    pub fn cidr(&self) -> Option<Ipv4Net> {
        match self {
            Token::Native(t) => t.cidr,
            Token::Edgevpn(_) => None,
        }
    }

    /// Bootstrap multiaddrs the token carries.
    pub fn bootstrap(&self) -> &[Multiaddr] {
        match self {
            Token::Native(t) => &t.bootstrap,
            Token::Edgevpn(_) => &[],
        }
    }

    /// What can be shown about the token without revealing its secret.
    pub fn describe(&self) -> TokenDescription {
        let keys = self.keys();
        match self {
            Token::Native(t) => TokenDescription {
                kind: "native",
                version: Some(NATIVE_VERSION),
                network_id: keys.network_id().to_string(),
                cidr: t.cidr.map(|c| c.to_string()),
                bootstrap: t.bootstrap.iter().map(ToString::to_string).collect(),
                rendezvous_epoch_secs: Some(t.epoch_secs),
                otp_crypto_interval_secs: None,
                max_message_size: None,
                has_rendezvous: None,
            },
            Token::Edgevpn(t) => TokenDescription {
                kind: "edgevpn",
                version: None,
                network_id: keys.network_id().to_string(),
                cidr: None,
                bootstrap: Vec::new(),
                rendezvous_epoch_secs: (t.dht_interval != u64::MAX).then_some(t.dht_interval),
                otp_crypto_interval_secs: Some(t.crypto_interval),
                max_message_size: t.max_message_size,
                has_rendezvous: Some(t.rendezvous.is_some()),
            },
        }
    }
}

impl Token {
    /// The token's text form, as `Token::parse` reads it back: a native token's base64url, an
    /// edgevpn token's base64 YAML (what Kairos' cloud-config carries).
    pub fn encode(&self) -> String {
        match self {
            Token::Native(t) => t.encode(),
            Token::Edgevpn(t) => STANDARD.encode(t.yaml()),
        }
    }

    /// A token of the same kind and settings with fresh secrets from the operating system's
    /// CSPRNG: what `weft token rotate` moves a network to.
    pub fn rotated(&self) -> Token {
        match self {
            Token::Native(t) => Token::Native(NativeToken::generate(
                t.cidr,
                t.bootstrap.clone(),
                t.epoch_secs,
            )),
            Token::Edgevpn(t) => Token::Edgevpn(EdgevpnToken {
                dht_key: random_alphanumerics(EDGEVPN_KEY_LEN),
                crypto_key: random_alphanumerics(EDGEVPN_KEY_LEN),
                room: random_alphanumerics(EDGEVPN_KEY_LEN),
                mdns: random_alphanumerics(EDGEVPN_KEY_LEN),
                rendezvous: Some(random_alphanumerics(EDGEVPN_KEY_LEN)),
                ..t.clone()
            }),
        }
    }
}

/// Length of each random string of an edgevpn token, as edgevpn and Kairos make them.
const EDGEVPN_KEY_LEN: usize = 43;

/// `len` characters drawn uniformly from `[A-Za-z0-9]` with the OS CSPRNG.
fn random_alphanumerics(len: usize) -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl EdgevpnToken {
    /// The token's YAML document, with edgevpn's field names; every string is alphanumeric
    /// (as edgevpn and Kairos make them) or quoted.
    fn yaml(&self) -> String {
        let quoted = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let mut yaml = format!(
            "otp:\n  dht:\n    interval: {}\n    key: {}\n    length: {}\n  crypto:\n    interval: {}\n    key: {}\n    length: {}\nroom: {}\nmdns: {}\n",
            self.dht_interval,
            quoted(&self.dht_key),
            self.dht_key.len(),
            self.crypto_interval,
            quoted(&self.crypto_key),
            self.crypto_key.len(),
            quoted(&self.room),
            quoted(&self.mdns),
        );
        if let Some(rendezvous) = &self.rendezvous {
            yaml.push_str(&format!("rendezvous: {}\n", quoted(rendezvous)));
        }
        if let Some(size) = self.max_message_size {
            yaml.push_str(&format!("max_message_size: {size}\n"));
        }
        yaml
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Token({}, network {})",
            self.kind(),
            self.keys().network_id()
        )
    }
}

fn base64_problem(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, byte) => {
            format!(
                "character {:?} at position {at} is not in the base64 alphabet",
                *byte as char
            )
        }
        base64::DecodeError::InvalidLength(len) => {
            format!("{len} characters cannot be base64; is the token cut short?")
        }
        base64::DecodeError::InvalidLastSymbol(at, _) => {
            format!("the last character (position {at}) is wrong; is the token cut short?")
        }
        base64::DecodeError::InvalidPadding => "the '=' padding is wrong".to_string(),
    }
}

fn looks_like_yaml_mapping(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("otp:") || l.trim_start().starts_with("room:"))
}

/// The safe-to-print facts about a token (`weft token inspect`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenDescription {
    pub kind: &'static str,
    /// Format version; edgevpn tokens have none.
    pub version: Option<u8>,
    pub network_id: String,
    pub cidr: Option<String>,
    pub bootstrap: Vec<String>,
    /// `None` for an edgevpn token whose rendezvous never rotates.
    pub rendezvous_epoch_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp_crypto_interval_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_rendezvous: Option<bool>,
}

impl fmt::Display for TokenDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kind:        {}", self.kind)?;
        match self.version {
            Some(v) => writeln!(f, "version:     {v}")?,
            None => writeln!(f, "version:     none (edgevpn tokens are unversioned)")?,
        }
        writeln!(f, "network id:  {}", self.network_id)?;
        writeln!(
            f,
            "overlay:     {}",
            self.cidr
                .as_deref()
                .unwrap_or("not set (node configuration decides)")
        )?;
        if self.bootstrap.is_empty() {
            writeln!(f, "bootstrap:   none")?;
        } else {
            writeln!(f, "bootstrap:   {}", self.bootstrap.join(", "))?;
        }
        match self.rendezvous_epoch_secs {
            Some(secs) => writeln!(f, "rendezvous:  rotates every {secs} s")?,
            None => writeln!(f, "rendezvous:  never rotates")?,
        }
        if let Some(secs) = self.otp_crypto_interval_secs {
            writeln!(f, "otp crypto:  interval {secs} s")?;
        }
        if let Some(size) = self.max_message_size {
            writeln!(f, "max message: {size} bytes")?;
        }
        Ok(())
    }
}

/// A 32-byte derived key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DerivedKey(pub [u8; 32]);

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(..)")
    }
}

/// The short identifier of a network, shown to operators (`weft status`, the API); it never
/// leaves the node, so outsiders cannot tell one fleet from another.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkId(pub [u8; 8]);

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({self})")
    }
}

/// All keys derived from a token (HKDF-SHA256, RFC 5869), each with its own label.
#[derive(Clone)]
pub struct NetworkKeys {
    prk: Hkdf<Sha256>,
    network_id: NetworkId,
    /// Keys the admission proof's HMAC.
    pub admission: DerivedKey,
    /// Seals ledger gossip and secrets stored in the ledger.
    pub ledger_seal: DerivedKey,
    /// Mixed into every data-plane session key exchange.
    pub dataplane: DerivedKey,
    /// Filters mDNS announcements to this network.
    pub mdns: DerivedKey,
    /// Length of a rendezvous epoch; `u64::MAX` means a single, never-rotating epoch.
    pub epoch_secs: u64,
}

impl NetworkKeys {
    fn derive(salt: &[u8], ikm: &[u8], epoch_secs: u64) -> Self {
        let prk = Hkdf::<Sha256>::new(Some(salt), ikm);
        let mut id = [0u8; 8];
        expand(&prk, LABEL_NETWORK_ID, &mut id);
        NetworkKeys {
            network_id: NetworkId(id),
            admission: expand_key(&prk, LABEL_ADMISSION),
            ledger_seal: expand_key(&prk, LABEL_LEDGER_SEAL),
            dataplane: expand_key(&prk, LABEL_DATAPLANE),
            mdns: expand_key(&prk, LABEL_MDNS),
            epoch_secs: epoch_secs.max(1),
            prk,
        }
    }

    /// The network's public identifier.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// The rendezvous epoch a UNIX time falls in.
    pub fn epoch_at(&self, unix_secs: u64) -> u64 {
        unix_secs / self.epoch_secs
    }

    /// The rendezvous epochs to look up at `unix_secs`: the current one and the neighbour
    /// whose boundary is nearer. A member provides under its own current epoch only, so two
    /// clocks less than half an epoch apart (30 minutes with the default epoch) still meet:
    /// two such clocks on either side of a boundary are each within half an epoch of it, so
    /// for both it is the nearer one (and clocks less than a whole epoch apart meet from one
    /// side at least). Each key looked up is a walk of the DHT whose answers list members with
    /// their addresses, so a third key, the far neighbour, would cost half as much again. A
    /// node whose lookups have settled looks up its current epoch only: a record lives 3 hours,
    /// so the slower of two clocks on either side of a boundary still finds, under its own
    /// epoch, the record the faster one provided there an epoch before.
    pub fn lookup_epochs(&self, unix_secs: u64) -> Vec<u64> {
        let epoch = self.epoch_at(unix_secs);
        let into = unix_secs % self.epoch_secs;
        let neighbour = if into < self.epoch_secs - into {
            epoch.checked_sub(1)
        } else {
            epoch.checked_add(1)
        };
        neighbour.map_or(vec![epoch], |n| vec![epoch, n])
    }

    /// The DHT rendezvous key of one epoch.
    pub fn rendezvous(&self, epoch: u64) -> DerivedKey {
        let mut info = LABEL_RENDEZVOUS.to_vec();
        info.extend_from_slice(&epoch.to_be_bytes());
        expand_key(&self.prk, &info)
    }
}

impl fmt::Debug for NetworkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkKeys(network {})", self.network_id)
    }
}

fn expand(prk: &Hkdf<Sha256>, info: &[u8], out: &mut [u8]) {
    prk.expand(info, out)
        .expect("HKDF-SHA256 can expand up to 8160 bytes; weft asks for at most 32");
}

fn expand_key(prk: &Hkdf<Sha256>, info: &[u8]) -> DerivedKey {
    let mut key = [0u8; 32];
    expand(prk, info, &mut key);
    DerivedKey(key)
}

/// Reading edgevpn's token YAML, with errors that name the exact field.
mod edgevpn {
    use serde_json::Value;

    use super::{EdgevpnToken, TokenError};

    pub(super) fn parse(yaml: &str) -> Result<EdgevpnToken, TokenError> {
        let doc: Value =
            serde_saphyr::from_str(yaml).map_err(|e| TokenError::NotYaml(first_line(&e)))?;
        if !doc.is_object() {
            return Err(TokenError::WrongType {
                field: "(document)".into(),
                expected: "a mapping with otp, room, rendezvous and mdns",
                got: describe(&doc),
            });
        }
        Ok(EdgevpnToken {
            dht_key: string(&doc, &["otp", "dht", "key"])?,
            crypto_key: string(&doc, &["otp", "crypto", "key"])?,
            room: string(&doc, &["room"])?,
            mdns: string(&doc, &["mdns"])?,
            rendezvous: optional(&doc, &["rendezvous"], string)?,
            dht_interval: optional(&doc, &["otp", "dht", "interval"], integer)?.unwrap_or(9000),
            crypto_interval: optional(&doc, &["otp", "crypto", "interval"], integer)?
                .unwrap_or(9000),
            max_message_size: optional(&doc, &["max_message_size"], integer)?,
        })
    }

    fn first_line(e: &impl std::fmt::Display) -> String {
        e.to_string().lines().next().unwrap_or_default().to_string()
    }

    fn lookup<'a>(doc: &'a Value, path: &[&str]) -> Result<Option<&'a Value>, TokenError> {
        let mut node = doc;
        for (depth, key) in path.iter().enumerate() {
            match node {
                Value::Object(map) => match map.get(*key) {
                    Some(Value::Null) | None => return Ok(None),
                    Some(next) => node = next,
                },
                other => {
                    return Err(TokenError::WrongType {
                        field: path[..depth].join("."),
                        expected: "a mapping",
                        got: describe(other),
                    });
                }
            }
        }
        Ok(Some(node))
    }

    fn string(doc: &Value, path: &[&str]) -> Result<String, TokenError> {
        let field = path.join(".");
        match lookup(doc, path)? {
            None => Err(TokenError::MissingField(field)),
            Some(Value::String(s)) if s.is_empty() => Err(TokenError::WrongType {
                field,
                expected: "a non-empty string",
                got: "an empty string".into(),
            }),
            Some(Value::String(s)) => Ok(s.clone()),
            // YAML reads an all-digit key as a number; edgevpn (Go) reads it back as text.
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(other) => Err(TokenError::WrongType {
                field,
                expected: "a string",
                got: describe(other),
            }),
        }
    }

    fn integer(doc: &Value, path: &[&str]) -> Result<u64, TokenError> {
        let field = path.join(".");
        match lookup(doc, path)? {
            None => Err(TokenError::MissingField(field)),
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| TokenError::WrongType {
                field,
                expected: "a positive integer",
                got: n.to_string(),
            }),
            Some(other) => Err(TokenError::WrongType {
                field,
                expected: "a positive integer",
                got: describe(other),
            }),
        }
    }

    fn optional<T>(
        doc: &Value,
        path: &[&str],
        read: fn(&Value, &[&str]) -> Result<T, TokenError>,
    ) -> Result<Option<T>, TokenError> {
        match lookup(doc, path)? {
            None => Ok(None),
            Some(_) => read(doc, path).map(Some),
        }
    }

    fn describe(value: &Value) -> String {
        match value {
            Value::Null => "nothing".into(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Number(n) => format!("the number {n}"),
            Value::String(s) => format!("{s:?}"),
            Value::Array(_) => "a sequence".into(),
            Value::Object(_) => "a mapping".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGEVPN_YAML: &str = "otp:\n  dht:\n    interval: 9000\n    key: DHTKEYDHTKEY\n    length: 43\n  crypto:\n    interval: 9000\n    key: CRYPTOKEY\n    length: 43\nroom: ROOM\nrendezvous: RENDEZVOUS\nmdns: MDNS\nmax_message_size: 20971520\n";

    fn edgevpn_b64(yaml: &str) -> String {
        STANDARD.encode(yaml)
    }

    #[test]
    fn native_token_round_trips_through_its_text_form() {
        let token = NativeToken::generate(
            Some("10.7.0.0/16".parse().unwrap()),
            vec!["/ip4/192.0.2.1/udp/4001/quic-v1".parse().unwrap()],
            600,
        );
        let parsed = Token::parse(&token.encode()).unwrap();
        assert_eq!(parsed, Token::Native(token));
        assert!(parsed.describe().to_string().contains("10.7.0.0/16"));
    }

    #[test]
    fn native_tokens_are_visibly_weft_tokens() {
        assert!(
            NativeToken::from_secret([9; 32])
                .encode()
                .starts_with(NATIVE_PREFIX)
        );
    }

    #[test]
    fn two_generated_tokens_never_share_a_secret() {
        let a = NativeToken::generate(None, vec![], DEFAULT_EPOCH_SECS);
        let b = NativeToken::generate(None, vec![], DEFAULT_EPOCH_SECS);
        assert_ne!(a.secret, b.secret);
        assert_ne!(
            Token::Native(a).keys().network_id(),
            Token::Native(b).keys().network_id()
        );
    }

    #[test]
    fn a_rotated_token_keeps_its_kind_and_settings_with_new_secrets() {
        let native = Token::Native(NativeToken::generate(
            Some("10.7.0.0/16".parse().unwrap()),
            vec!["/ip4/192.0.2.1/udp/4001/quic-v1".parse().unwrap()],
            600,
        ));
        let edgevpn = Token::parse(&edgevpn_b64(EDGEVPN_YAML)).unwrap();
        for token in [native, edgevpn] {
            let rotated = token.rotated();
            assert_eq!(Token::parse(&rotated.encode()).unwrap(), rotated);
            assert_eq!(Token::parse(&token.encode()).unwrap(), token);
            assert_ne!(rotated.keys().network_id(), token.keys().network_id());
            let (mut before, mut after) = (token.describe(), rotated.describe());
            assert_eq!(after.has_rendezvous.take().or(Some(true)), Some(true));
            before.has_rendezvous = None;
            before.network_id.clear();
            after.network_id.clear();
            assert_eq!(before, after, "settings carried over");
        }
    }

    #[test]
    fn edgevpn_token_is_accepted_base64_or_as_yaml() {
        let from_b64 = Token::parse(&edgevpn_b64(EDGEVPN_YAML)).unwrap();
        let from_yaml = Token::parse(EDGEVPN_YAML).unwrap();
        assert_eq!(from_b64.kind(), "edgevpn");
        assert_eq!(from_b64, from_yaml);
    }

    #[test]
    fn kairos_never_rotating_interval_is_read_as_one_epoch() {
        let yaml = EDGEVPN_YAML.replacen("interval: 9000", "interval: 18446744073709551615", 1);
        let token = Token::parse(&yaml).unwrap();
        let keys = token.keys();
        assert_eq!(keys.epoch_at(0), keys.epoch_at(4_000_000_000));
        assert_eq!(keys.lookup_epochs(4_000_000_000), vec![0]);
        assert_eq!(token.describe().rendezvous_epoch_secs, None);
    }

    #[test]
    fn a_lookup_takes_the_current_epoch_and_the_nearer_neighbour() {
        let keys = Token::Native(NativeToken::generate(None, Vec::new(), 3600)).keys();
        let start = 500 * 3600;
        assert_eq!(keys.lookup_epochs(start), vec![500, 499]);
        assert_eq!(keys.lookup_epochs(start + 1799), vec![500, 499]);
        assert_eq!(keys.lookup_epochs(start + 1800), vec![500, 501]);
        assert_eq!(keys.lookup_epochs(start + 3599), vec![500, 501]);
        assert_eq!(keys.lookup_epochs(10), vec![0]);
    }

    proptest::proptest! {
        #[test]
        fn clocks_less_than_half_an_epoch_apart_look_up_each_others_epoch(
            t in 1_000_000u64..2_000_000,
            skew in 0u64..600,
        ) {
            let keys = Token::Native(NativeToken::generate(None, Vec::new(), 1200)).keys();
            let (early, late) = (t, t + skew);
            // Each provides under its own epoch only; each must look up the other's.
            proptest::prop_assert!(keys.lookup_epochs(early).contains(&keys.epoch_at(late)));
            proptest::prop_assert!(keys.lookup_epochs(late).contains(&keys.epoch_at(early)));
        }
    }

    #[test]
    fn malformed_tokens_name_what_is_wrong() {
        assert!(matches!(
            Token::parse("not a token!"),
            Err(TokenError::BadBase64(_))
        ));
        let missing = EDGEVPN_YAML.replace(
            "  crypto:\n    interval: 9000\n    key: CRYPTOKEY\n",
            "  crypto:\n    interval: 9000\n",
        );
        assert_eq!(
            Token::parse(&edgevpn_b64(&missing)),
            Err(TokenError::MissingField("otp.crypto.key".into()))
        );
        let wrong = EDGEVPN_YAML.replacen("interval: 9000", "interval: soon", 1);
        let err = Token::parse(&edgevpn_b64(&wrong)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid token: field otp.dht.interval must be a positive integer, got \"soon\""
        );
        let nested = EDGEVPN_YAML.replacen("otp:\n  dht:", "otp: 3\nx:\n  dht:", 1);
        assert!(matches!(
            Token::parse(&nested),
            Err(TokenError::WrongType { field, .. }) if field == "otp"
        ));
    }

    #[test]
    fn native_token_of_a_future_version_is_refused_not_misread() {
        let mut bytes = URL_SAFE_NO_PAD
            .decode(NativeToken::from_secret([1; 32]).encode())
            .unwrap();
        bytes[4] = 9;
        assert_eq!(
            Token::parse(&URL_SAFE_NO_PAD.encode(bytes)),
            Err(TokenError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn native_token_with_a_short_secret_is_refused() {
        let body = NetworkToken {
            secret: vec![1; 5],
            ..Default::default()
        };
        let mut bytes = b"WEFT\x01".to_vec();
        body.encode(&mut bytes).unwrap();
        assert_eq!(
            Token::parse(&URL_SAFE_NO_PAD.encode(bytes)),
            Err(TokenError::SecretLength(5))
        );
    }

    #[test]
    fn every_purpose_gets_its_own_key() {
        let keys = Token::Native(NativeToken::from_secret([3; 32])).keys();
        let all = [
            &keys.admission,
            &keys.ledger_seal,
            &keys.dataplane,
            &keys.mdns,
            &keys.rendezvous(0),
            &keys.rendezvous(1),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let token = Token::Native(NativeToken::from_secret([0xab; 32]));
        let shown = format!("{token:?} {:?}", token.keys());
        assert!(!shown.contains("ab, ab") && !shown.contains("abab"));
    }
}
