//! The keys derived from two fixed tokens equal the vectors in `tests/vectors/tokens.json`,
//! which `tests/vectors/derive.py` computed independently with Python's standard library.
//! A change here means every existing network would split: such a change needs a new token
//! version, not new vectors.

use serde_json::Value;
use weft::token::{NativeToken, NetworkKeys, Token};

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/tokens.json")).expect("vectors file is JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_keys(keys: &NetworkKeys, want: &Value) {
    let got = [
        ("network_id", keys.network_id().to_string()),
        ("admission", hex(&keys.admission.0)),
        ("ledger_seal", hex(&keys.ledger_seal.0)),
        ("dataplane", hex(&keys.dataplane.0)),
        ("mdns", hex(&keys.mdns.0)),
        ("rendezvous_0", hex(&keys.rendezvous(0).0)),
        ("rendezvous_487000", hex(&keys.rendezvous(487_000).0)),
    ];
    for (name, value) in got {
        assert_eq!(value, want[name].as_str().unwrap(), "derived key {name}");
    }
}

#[test]
fn native_token_vector_derives_the_stored_keys() {
    let v = &vectors()["native"];
    let token = Token::parse(v["token"].as_str().unwrap()).unwrap();
    assert_eq!(token.kind(), "native");
    assert_eq!(
        token.cidr().unwrap().to_string(),
        v["cidr"].as_str().unwrap()
    );
    assert_keys(&token.keys(), &v["keys"]);
}

#[test]
fn native_token_encoding_is_stable() {
    let v = &vectors()["native"];
    let mut secret = [0u8; 32];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = i as u8;
    }
    let mut token = NativeToken::from_secret(secret);
    token.cidr = Some(v["cidr"].as_str().unwrap().parse().unwrap());
    assert_eq!(token.encode(), v["token"].as_str().unwrap());
}

#[test]
fn edgevpn_token_vector_derives_the_stored_keys() {
    let v = &vectors()["edgevpn"];
    let token = Token::parse(v["token"].as_str().unwrap()).unwrap();
    assert_eq!(token.kind(), "edgevpn");
    assert_keys(&token.keys(), &v["keys"]);
}
