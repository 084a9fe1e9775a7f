//! Transparent interception: the init step that redirects a pod's TCP traffic to the
//! sidecar's intercepting listeners (`iptables`), and what those listeners do with each
//! redirected connection (`connection`): read its original destination, detect its
//! protocol, and send it to a configured cluster or straight through.

pub mod connection;
pub mod destinations;
pub mod iptables;
