//! The operator's key: what lets an operator, and no member, remove, deny, allow, reserve an
//! address for or fix the role of another member, set the role policy or rotate the token, in
//! a mesh configured with it (`weft up --operator-key`). Every edge machine holds the network token, so a
//! member's word cannot stand for the operator: a stolen machine could deny the others or
//! remove the control plane. The operator keeps an ed25519 key off the edge machines (`weft
//! operator keygen`); the CLI signs each such command with it, together with a sequence number
//! (the operator's clock in microseconds), and every node is told only the public key. An
//! operator may use one key for several meshes, so a command is signed for one network (the
//! token's id, [`Signed::network`]): a member of two meshes cannot carry it from one to the
//! other.
//!
//! This module owns the keys, their text forms and files, and the signed command; which
//! commands need a signature, and how replays are refused, is the ledger's
//! ([`crate::ledger::state::operator`]).

use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libp2p::identity::ed25519;
use serde::{Deserialize, Serialize};

use crate::ledger::state::Command;

/// What a signature covers, before the sequence number and the command's JSON: a signature
/// made for anything else never verifies here.
const CONTEXT: &[u8] = b"weft operator command v1\n";

/// The operator's public key, as every node of a mesh is configured with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorKey(ed25519::PublicKey);

impl FromStr for OperatorKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| {
            format!("an operator key is the base64 that weft operator keygen prints: {e}")
        })?;
        ed25519::PublicKey::try_from_bytes(&bytes)
            .map(OperatorKey)
            .map_err(|_| {
                format!(
                    "an operator key is 32 bytes of ed25519 public key in base64, got {} bytes",
                    bytes.len()
                )
            })
    }
}

impl std::fmt::Display for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&STANDARD.encode(self.0.to_bytes()))
    }
}

/// The operator's secret key, kept in a file (mode 0600) off the edge machines.
pub struct OperatorSecret(ed25519::Keypair);

impl OperatorSecret {
    /// A new key.
    pub fn generate() -> Self {
        OperatorSecret(ed25519::Keypair::generate())
    }

    /// The key made from `secret`, for a simulation that draws everything from its seed.
    #[cfg(test)]
    pub(crate) fn from_secret(mut secret: [u8; 32]) -> Self {
        let secret = ed25519::SecretKey::try_from_bytes(&mut secret)
            .expect("32 bytes are an ed25519 secret key");
        OperatorSecret(ed25519::Keypair::from(secret))
    }

    /// The public key that nodes are configured with.
    pub fn public(&self) -> OperatorKey {
        OperatorKey(self.0.public())
    }

    /// Writes the key to `path` (mode 0600, durably); an existing file is never replaced.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if path.exists() {
            return Err(format!(
                "{} exists; an operator key is never overwritten (its public key is what every \
                 node trusts)",
                path.display()
            ));
        }
        let text = format!("{}\n", STANDARD.encode(self.0.secret().as_ref()));
        crate::durable::write(path, text.as_bytes(), 0o600)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Reads a key written by [`OperatorSecret::save`].
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = crate::config::read_text(path, 4096)
            .map_err(|e| format!("cannot read the operator key {}: {e}", path.display()))?;
        let mut bytes = STANDARD.decode(text.trim()).map_err(|e| {
            format!(
                "{} is not an operator key file (base64 of a secret key): {e}",
                path.display()
            )
        })?;
        let secret = ed25519::SecretKey::try_from_bytes(&mut bytes).map_err(|_| {
            format!(
                "{} is not an operator key file: it holds {} bytes, not 32",
                path.display(),
                bytes.len()
            )
        })?;
        Ok(OperatorSecret(ed25519::Keypair::from(secret)))
    }

    /// Signs `command` with sequence number `seq`, for any cluster of any network.
    pub fn sign(&self, seq: u64, command: &Command) -> Signed {
        self.sign_in(seq, command, Scope::default())
    }

    /// Signs `command` with sequence number `seq`, for the cluster and the network `scope`
    /// names, each only when given.
    pub fn sign_in(&self, seq: u64, command: &Command, scope: Scope) -> Signed {
        let command = serde_json::to_string(command).expect("a ledger command serializes to JSON");
        let mut signed = Signed {
            seq,
            command,
            signature: String::new(),
            cluster: scope.cluster,
            network: scope.network,
        };
        signed.signature = STANDARD.encode(self.0.sign(&signed.signed_bytes()));
        signed
    }
}

/// Where a signed command holds: in one cluster (its id as `weft status` shows it; a removal
/// is signed so), in one network (the network id `weft status` shows), each only when given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub cluster: Option<String>,
    pub network: Option<String>,
}

/// A command the operator signed: its JSON exactly as signed (so the leader checks the bytes
/// the operator signed, whatever its version; every node decodes the command from them), the
/// sequence number, and the signature in base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub seq: u64,
    pub command: String,
    pub signature: String,
    /// The one cluster the command holds in, when signed for one (a removal always is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The one network (token's network id) the command holds in, when signed for one: the
    /// CLI signs every command so once the mesh's rules read it
    /// ([`crate::ledger::state::NETWORK_BOUND`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl Signed {
    /// The command signed, decoded.
    pub fn command(&self) -> Result<Command, String> {
        serde_json::from_str(&self.command)
            .map_err(|e| format!("the signed command does not decode: {e}"))
    }

    /// Whether `key` signed this command and number (and cluster and network). The command's
    /// JSON, the cluster and the network hold no line break, so that where each ends in the
    /// signed bytes is never in doubt.
    pub fn verify(&self, key: &OperatorKey) -> Result<(), String> {
        let scope = [&self.cluster, &self.network];
        let mut texts = std::iter::once(&self.command).chain(scope.into_iter().flatten());
        if texts.any(|text| text.contains('\n')) {
            return Err(
                "a signed command is compact JSON, and it and the cluster and network it is \
                 signed for hold no line break"
                    .into(),
            );
        }
        let signature = STANDARD
            .decode(&self.signature)
            .map_err(|_| "the operator's signature is not base64".to_string())?;
        if key.0.verify(&self.signed_bytes(), &signature) {
            Ok(())
        } else {
            Err("the operator's signature does not verify with this mesh's operator key".into())
        }
    }

    /// The context, the number, the command's JSON, then for a command signed for one cluster
    /// `\ncluster ` and its id, and for one signed for one network `\nnetwork ` and its id:
    /// unambiguous because [`Signed::verify`] takes no line break in any of them. A command
    /// signed for neither is signed as by a weft before either.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(CONTEXT.len() + 8 + self.command.len() + 64);
        bytes.extend_from_slice(CONTEXT);
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        bytes.extend_from_slice(self.command.as_bytes());
        for (label, value) in [("cluster", &self.cluster), ("network", &self.network)] {
            if let Some(value) = value {
                bytes.extend_from_slice(format!("\n{label} {value}").as_bytes());
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(peer: &str) -> Command {
        Command::Deny { peer: peer.into() }
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_number_and_command() {
        let secret = OperatorSecret::generate();
        let key = secret.public();
        let signed = secret.sign(7, &deny("a"));
        assert!(signed.verify(&key).is_ok());
        assert_eq!(signed.command().unwrap(), deny("a"));

        let other = OperatorSecret::generate().public();
        assert!(signed.verify(&other).is_err());
        let renumbered = Signed {
            seq: 8,
            ..signed.clone()
        };
        assert!(renumbered.verify(&key).is_err());
        let retargeted = Signed {
            command: serde_json::to_string(&deny("b")).unwrap(),
            ..signed.clone()
        };
        assert!(retargeted.verify(&key).is_err());
        let garbled = Signed {
            signature: "not base64!".into(),
            ..signed.clone()
        };
        assert!(garbled.verify(&key).is_err());
        // Bound to a cluster, the binding is signed too.
        let bound = secret.sign_in(9, &deny("a"), in_cluster("0000000000000007"));
        assert!(bound.verify(&key).is_ok());
        let moved = Signed {
            cluster: Some("0000000000000008".into()),
            ..bound.clone()
        };
        assert!(moved.verify(&key).is_err());
        let unbound = Signed {
            cluster: None,
            ..bound.clone()
        };
        assert!(unbound.verify(&key).is_err());
        // The binding cannot be moved into the command: the signature over (command, cluster)
        // does not pass for the command with the cluster's bytes appended.
        let folded = Signed {
            command: format!("{}\ncluster {}", bound.command, "0000000000000007"),
            cluster: None,
            ..bound
        };
        assert!(folded.verify(&key).is_err());
    }

    fn in_cluster(cluster: &str) -> Scope {
        Scope {
            cluster: Some(cluster.into()),
            network: None,
        }
    }

    #[test]
    fn a_signature_for_one_network_holds_for_it_alone_and_cannot_be_unbound() {
        let secret = OperatorSecret::generate();
        let key = secret.public();
        let scope = Scope {
            cluster: Some("07".into()),
            network: Some("aa".into()),
        };
        let bound = secret.sign_in(3, &deny("a"), scope);
        assert!(bound.verify(&key).is_ok());
        for (cluster, network) in [
            (Some("07"), Some("bb")),
            (Some("07"), None),
            (None, Some("aa")),
            (None, None),
            (Some("07\nnetwork aa"), None),
        ] {
            let moved = Signed {
                cluster: cluster.map(String::from),
                network: network.map(String::from),
                ..bound.clone()
            };
            assert!(moved.verify(&key).is_err(), "{cluster:?} {network:?}");
        }
        // A line break in the network is refused before the signature is checked.
        let broken = secret.sign_in(
            4,
            &deny("a"),
            Scope {
                cluster: None,
                network: Some("aa\ncluster 07".into()),
            },
        );
        let refusal = broken.verify(&key).unwrap_err();
        assert!(refusal.contains("line break"), "{refusal}");
        // Signed for a network alone, and for nothing, as a weft before the network did.
        let network_only = secret.sign_in(
            5,
            &deny("a"),
            Scope {
                cluster: None,
                network: Some("aa".into()),
            },
        );
        assert!(network_only.verify(&key).is_ok());
        let json = serde_json::to_string(&secret.sign(6, &deny("a"))).unwrap();
        assert!(!json.contains("network"), "{json}");
    }

    #[test]
    fn keys_round_trip_through_their_text_and_file() {
        let secret = OperatorSecret::generate();
        let key = secret.public();
        assert_eq!(key.to_string().parse::<OperatorKey>().unwrap(), key);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.key");
        secret.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = OperatorSecret::load(&path).unwrap();
        assert_eq!(loaded.public(), key);
        let again = secret.save(&path).unwrap_err();
        assert!(again.contains("never overwritten"), "{again}");
    }

    #[test]
    fn bad_key_texts_are_refused_naming_what_is_expected() {
        let short = "AAAA".parse::<OperatorKey>().unwrap_err();
        assert!(short.contains("32 bytes"), "{short}");
        let garbage = "not base64!".parse::<OperatorKey>().unwrap_err();
        assert!(garbage.contains("weft operator keygen"), "{garbage}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "AAAA\n").unwrap();
        let loaded = OperatorSecret::load(&path).err().unwrap();
        assert!(loaded.contains("not 32"), "{loaded}");
    }
}
