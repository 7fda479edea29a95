//! The data plane: members' IP packets, encrypted with per-pair session keys, over their own UDP
//! path (DESIGN §6). Built in slices; what exists so far is pure: the wire frame and its
//! sealing ([`frame`]), the replay window ([`replay`]), and the route table with ICMP
//! unreachable replies ([`router`]). The TUN device, sessions and UDP paths come next.

pub mod frame;
pub mod replay;
pub mod router;
pub mod session;
