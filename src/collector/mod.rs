//! Where mirrored datagrams are received. `local`: a UDP socket on this machine (a mirror
//! target, or a lab box receiving VXLAN). Remote collectors stream the same records later.

pub mod local;
