#!/usr/bin/env python3
"""Independent reference for weft's token key derivation (HKDF-SHA256, RFC 5869).

Writes tests/vectors/tokens.json from fixed inputs using only Python's standard library, so the
vectors the Rust tests check were not produced by the code under test. Run it again only when
the derivation is meant to change (which breaks every existing network).
"""
import base64
import hashlib
import hmac
import json
import pathlib
import struct


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def keys(salt: bytes, ikm: bytes) -> dict:
    return {
        "network_id": hkdf(salt, ikm, b"weft/network-id", 8).hex(),
        "admission": hkdf(salt, ikm, b"weft/admission", 32).hex(),
        "ledger_seal": hkdf(salt, ikm, b"weft/ledger-seal", 32).hex(),
        "dataplane": hkdf(salt, ikm, b"weft/dataplane", 32).hex(),
        "mdns": hkdf(salt, ikm, b"weft/mdns", 32).hex(),
        "rendezvous_0": hkdf(salt, ikm, b"weft/rendezvous/" + struct.pack(">Q", 0), 32).hex(),
        "rendezvous_487000": hkdf(salt, ikm, b"weft/rendezvous/" + struct.pack(">Q", 487000), 32).hex(),
    }


def protobuf_bytes(field: int, value: bytes) -> bytes:
    assert len(value) < 128
    return bytes([field << 3 | 2, len(value)]) + value


# Native: magic, version 1, NetworkToken{secret = 0x00..0x1f, cidr = "10.42.0.0/16"}.
secret = bytes(range(32))
body = protobuf_bytes(1, secret) + protobuf_bytes(2, b"10.42.0.0/16")
native = base64.urlsafe_b64encode(b"WEFT\x01" + body).rstrip(b"=").decode()

# edgevpn: the YAML document edgevpn writes, base64 with padding.
edgevpn_fields = {
    "crypto": "cR7ptoK3yAbcdefghijklmnopqrstuvwxyz0123456789"[:43],
    "dht": "dHtK3yABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"[:43],
    "room": "r00mABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"[:43],
    "mdns": "mDn5ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"[:43],
}
yaml = (
    "otp:\n"
    f"  dht:\n    interval: 9000\n    key: {edgevpn_fields['dht']}\n    length: 43\n"
    f"  crypto:\n    interval: 9000\n    key: {edgevpn_fields['crypto']}\n    length: 43\n"
    f"room: {edgevpn_fields['room']}\n"
    "rendezvous: Zk3rENDEZVOUSabcdefghijklmnopqrstuvwxyz01234\n"
    f"mdns: {edgevpn_fields['mdns']}\n"
    "max_message_size: 20971520\n"
)
edgevpn = base64.b64encode(yaml.encode()).decode()
ikm = b"".join(
    struct.pack(">I", len(v)) + v.encode()
    for v in (edgevpn_fields["crypto"], edgevpn_fields["dht"], edgevpn_fields["room"], edgevpn_fields["mdns"])
)

vectors = {
    "native": {"token": native, "secret_hex": secret.hex(), "cidr": "10.42.0.0/16",
               "keys": keys(b"weft network token v1", secret)},
    "edgevpn": {"token": edgevpn, "keys": keys(b"weft edgevpn token v1", ikm)},
}
out = pathlib.Path(__file__).with_name("tokens.json")
out.write_text(json.dumps(vectors, indent=2) + "\n")
print(f"wrote {out}")
