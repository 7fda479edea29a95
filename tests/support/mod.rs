//! Helpers shared by the integration tests.

pub mod cdp;
pub mod dig;
pub mod k3s;
pub mod ledger;
pub mod mesh;
pub mod netns;
