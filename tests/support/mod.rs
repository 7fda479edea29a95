//! Helpers shared by the integration tests.

pub mod mesh;
pub mod netns;
