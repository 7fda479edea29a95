//! The data plane: members' IP packets, encrypted with per-pair session keys, over their own UDP
//! path (DESIGN §6). Built in slices; what exists so far is pure: the wire frame and its
//! sealing ([`frame`]) and the replay window ([`replay`]). The TUN device, sessions, UDP paths
//! and the router come next.

pub mod frame;
pub mod replay;
