//! The network side: socket files (a directory nobody else controls, stale files, modes), who may use
//! which socket ([`peer`]), the open verify connections ([`roster`]), and one client connection: handshake,
//! framing, pipelining and its bounds ([`connection`]). A request leaves this folder as a decoded frame
//! handed to [`crate::dispatch`], and comes back as reply bytes.

pub mod connection;
pub mod peer;
pub mod roster;
pub mod socket;
