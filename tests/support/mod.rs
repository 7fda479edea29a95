//! Helpers shared by the integration tests.

pub mod dig;
pub mod mesh;
pub mod netns;
