//! TX checksum offload through the `SIOCETHTOOL` ioctl (what `ethtool -K IF tx off` does).
//!
//! The userspace datapath reads frames from veths through raw sockets with their checksums
//! still unfinished, so a pod's TCP packets would be dropped by the receiver: both veth
//! ends need TX checksum offload off. The ioctl acts on the interface of that name in the
//! network namespace of the calling thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SIOCETHTOOL` from `linux/sockios.h`.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// `ETHTOOL_GTXCSUM`: get TX checksum offload.
const ETHTOOL_GTXCSUM: u32 = 0x16;
/// `ETHTOOL_STXCSUM`: set TX checksum offload.
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {ifname:?}"),
        ));
    }
    // SAFETY: plain socket(2) call; the descriptor is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut value = EthtoolValue { cmd, data };
    let mut request = IfReqData {
        name: [0; libc::IFNAMSIZ],
        data: (&mut value as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    for (slot, byte) in request.name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: `request` is a valid ifreq whose data pointer refers to `value`, both alive
    // for the duration of the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

/// Turns TX checksum offload off on `ifname` (in the calling thread's network namespace).
pub fn disable_tx_checksum(ifname: &str) -> io::Result<()> {
    ethtool(ifname, ETHTOOL_STXCSUM, 0).map(|_| ())
}

/// Whether TX checksum offload is on for `ifname` (in the calling thread's network namespace).
pub fn tx_checksum_enabled(ifname: &str) -> io::Result<bool> {
    ethtool(ifname, ETHTOOL_GTXCSUM, 0).map(|on| on != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_and_unknown_interfaces() {
        assert_eq!(
            disable_tx_checksum("").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            disable_tx_checksum("a-name-longer-than-15")
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let missing = tx_checksum_enabled("rovn-no-such0").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENODEV), "{missing}");
    }
}
