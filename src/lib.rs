//! weft: a peer-to-peer mesh networking and coordination daemon.
//!
//! Machines holding one network token find each other, prove membership, get overlay addresses
//! and carry encrypted IP traffic. This library holds every part; `src/main.rs` only calls
//! [`cli::main`]. See `docs/architecture.md` for how the parts fit.

pub mod api;
pub mod bootstrap;
pub mod chance;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod durable;
pub mod fault;
#[doc(hidden)]
pub mod fuzz;
pub mod identity;
pub mod keyring;
pub mod ledger;
pub mod memory;
pub mod operator;
pub mod p2p;
pub mod rotation;
pub mod token;

/// Wire schemas compiled from `proto/` by `build.rs`.
pub mod proto {
    /// weft's libp2p protocols (admission, control, gossip envelope).
    pub mod p2p {
        #[allow(missing_docs, clippy::all)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/weft.p2p.v1.rs"));
        }
    }
    /// The native network token's body.
    pub mod token {
        #[allow(missing_docs, clippy::all)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/weft.token.v1.rs"));
        }
    }
}

/// This build's version, as reported by `weft version` and the API.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
