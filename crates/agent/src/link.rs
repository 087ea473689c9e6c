//! The pod's veth pair, made, checked and removed with rtnetlink.
//!
//! `setns(2)` changes the namespace of the calling thread only, so every operation runs on a
//! thread of its own ([`run_on_own_thread`]) that enters the namespaces it needs and ends
//! with the operation: no other task ever runs in a pod's namespace. Netlink sockets belong
//! to the namespace they were opened in, so each step opens its connection after entering.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::IpNet;
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::ethtool;
use api::pod_network::PodAddress;

/// `ENODEV`/`ENOENT` from netlink: the link is not there.
const NOT_FOUND_ERRNOS: [i32; 2] = [libc::ENODEV, libc::ENOENT];

/// A failed link operation: what was being done, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action}: {reason}")]
pub struct LinkError {
    /// The step that failed, e.g. `creating veth 1a2b_h`.
    pub action: String,
    /// The cause.
    pub reason: String,
    /// The pod's network namespace could not be opened (it is gone or was never made).
    pub netns_missing: bool,
}

impl LinkError {
    pub(crate) fn new(action: impl Into<String>, reason: impl ToString) -> Self {
        LinkError {
            action: action.into(),
            reason: reason.to_string(),
            netns_missing: false,
        }
    }
}

/// Everything needed to build a pod's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The namespace holding the host ends (where `ovs-vswitchd` runs); `None`: the agent's.
    pub host_netns: Option<PathBuf>,
    /// The host end's name (also the OVS port name).
    pub host_if: String,
    /// The pod's namespace (`CNI_NETNS`).
    pub pod_netns: PathBuf,
    /// The pod end's name (`CNI_IFNAME`).
    pub pod_if: String,
    /// The pod end's MAC.
    pub mac: [u8; 6],
    /// MTU of both ends.
    pub mtu: u32,
    /// Addresses of the pod end, each with the gateway of its family.
    pub addresses: Vec<PodAddress>,
}

/// What [`create`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    /// The host end's MAC (chosen by the kernel).
    pub host_mac: String,
}

/// Runs `work` on a new thread (so that `setns` affects nothing else) with a single-threaded
/// tokio runtime of its own, and awaits its result.
pub async fn run_on_own_thread<T, F, Fut>(name: &str, work: F) -> Result<T, LinkError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, LinkError>>,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LinkError::new("starting the netns thread's runtime", e))
                .and_then(|runtime| runtime.block_on(work()));
            let _ = sender.send(result);
        })
        .map_err(|e| LinkError::new("starting a netns thread", e))?;
    receiver
        .await
        .map_err(|_| LinkError::new("netns thread", "ended without an answer"))?
}

/// Opens a network namespace file.
pub(crate) fn open_netns(path: &Path) -> Result<File, LinkError> {
    File::open(path).map_err(|e| LinkError {
        action: format!("opening network namespace {}", path.display()),
        reason: e.to_string(),
        netns_missing: e.kind() == std::io::ErrorKind::NotFound,
    })
}

/// Moves the calling thread into the namespace of `file`.
pub(crate) fn enter(file: &File, path: &Path) -> Result<(), LinkError> {
    setns(file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| LinkError::new(format!("entering network namespace {}", path.display()), e))
}

/// A netlink connection in the calling thread's current namespace.
pub(crate) fn connect() -> Result<Handle, LinkError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| LinkError::new("opening a netlink socket", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

pub(crate) fn is_not_found(error: &rtnetlink::Error) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(m) if NOT_FOUND_ERRNOS.contains(&-m.raw_code()))
}

/// The index of link `name`, `None` if there is none.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(found) => Ok(found.map(|link| link.header.index)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(LinkError::new(format!("looking up link {name}"), e)),
    }
}

/// Deletes link `name` if it exists; whether it existed.
async fn delete_link(handle: &Handle, name: &str) -> Result<bool, LinkError> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(LinkError::new(format!("deleting link {name}"), e)),
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC of link `index`.
async fn link_mac(handle: &Handle, index: u32) -> Result<Option<String>, LinkError> {
    let mut links = handle.link().get().match_index(index).execute();
    let link = links
        .try_next()
        .await
        .map_err(|e| LinkError::new(format!("reading link {index}"), e))?;
    Ok(link.and_then(|l| {
        l.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(format_mac(&mac)),
            _ => None,
        })
    }))
}

/// The name of the pod end while it is still in the host namespace.
fn transit_name(host_if: &str) -> String {
    let stem: String = host_if.chars().take(13).collect();
    format!("{stem}_p")
}

/// Creates the veth pair of `spec`: host end up in the host namespace, pod end renamed,
/// addressed, routed and up in the pod's namespace, TX checksum offload off on both.
/// A leftover pair of an earlier attempt with the same host end name is replaced.
/// Call it through [`run_on_own_thread`].
pub async fn create(spec: VethSpec) -> Result<Veth, LinkError> {
    let pod_ns = open_netns(&spec.pod_netns)?;
    if let Some(host_ns) = &spec.host_netns {
        enter(&open_netns(host_ns)?, host_ns)?;
    }
    let host = connect()?;
    let transit = transit_name(&spec.host_if);
    delete_link(&host, &spec.host_if).await?;
    delete_link(&host, &transit).await?;
    host.link()
        .add(LinkVeth::new(&spec.host_if, &transit).mtu(spec.mtu).build())
        .execute()
        .await
        .map_err(|e| LinkError::new(format!("creating veth {}", spec.host_if), e))?;
    let peer = link_index(&host, &transit)
        .await?
        .ok_or_else(|| LinkError::new(format!("finding veth peer {transit}"), "not created"))?;
    // Moving the pod end across namespaces in the same message as its final name: a name
    // clash in the pod's namespace fails here, before anything else is touched there.
    host.link()
        .set(
            LinkUnspec::new_with_index(peer)
                .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&pod_ns))
                .name(spec.pod_if.clone())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| {
            LinkError::new(
                format!(
                    "moving {transit} into {} as {}",
                    spec.pod_netns.display(),
                    spec.pod_if
                ),
                e,
            )
        })?;
    let host_index = link_index(&host, &spec.host_if)
        .await?
        .ok_or_else(|| LinkError::new(format!("finding {}", spec.host_if), "gone"))?;
    host.link()
        .set(LinkUnspec::new_with_index(host_index).up().build())
        .execute()
        .await
        .map_err(|e| LinkError::new(format!("setting {} up", spec.host_if), e))?;
    ethtool::disable_tx_checksum(&spec.host_if).map_err(|e| {
        LinkError::new(
            format!("turning TX checksum offload off on {}", spec.host_if),
            e,
        )
    })?;
    let host_mac = link_mac(&host, host_index).await?.unwrap_or_default();

    enter(&pod_ns, &spec.pod_netns)?;
    let pod = connect()?;
    configure_pod_end(&pod, &spec).await?;
    ethtool::disable_tx_checksum(&spec.pod_if).map_err(|e| {
        LinkError::new(
            format!("turning TX checksum offload off on {}", spec.pod_if),
            e,
        )
    })?;
    Ok(Veth { host_mac })
}

async fn configure_pod_end(handle: &Handle, spec: &VethSpec) -> Result<(), LinkError> {
    let ifname = &spec.pod_if;
    let index = link_index(handle, ifname)
        .await?
        .ok_or_else(|| LinkError::new(format!("finding {ifname} in the pod"), "not there"))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .address(spec.mac.to_vec())
                .mtu(spec.mtu)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| LinkError::new(format!("setting MAC and MTU of {ifname}"), e))?;
    for address in &spec.addresses {
        handle
            .address()
            .add(index, address.address.addr(), address.address.prefix_len())
            .execute()
            .await
            .map_err(|e| LinkError::new(format!("adding {} to {ifname}", address.address), e))?;
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| LinkError::new(format!("setting {ifname} up"), e))?;
    if let Some(lo) = link_index(handle, "lo").await? {
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(|e| LinkError::new("setting lo up", e))?;
    }
    for address in &spec.addresses {
        let Some(gateway) = address.gateway else {
            continue;
        };
        let route = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| LinkError::new(format!("adding default route via {gateway}"), e))?;
    }
    Ok(())
}

/// Deletes the host end `host_if` (and with it the pod end) if it exists; whether it existed.
/// Call it through [`run_on_own_thread`].
pub async fn delete(host_netns: Option<PathBuf>, host_if: String) -> Result<bool, LinkError> {
    if let Some(host_ns) = &host_netns {
        enter(&open_netns(host_ns)?, host_ns)?;
    }
    let host = connect()?;
    let existed = delete_link(&host, &host_if).await?;
    // A pod end still waiting in the host namespace (an ADD interrupted before the move).
    delete_link(&host, &transit_name(&host_if)).await?;
    Ok(existed)
}

/// What CHECK expects of the pod's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The namespace of the host ends; `None`: the agent's.
    pub host_netns: Option<PathBuf>,
    /// The host end's name.
    pub host_if: String,
    /// The pod's namespace.
    pub pod_netns: PathBuf,
    /// The pod end's name.
    pub pod_if: String,
    /// Its MAC, if the previous result named one.
    pub mac: Option<String>,
    /// Addresses that must be on the pod end.
    pub addresses: Vec<IpNet>,
    /// Default gateways that must be routed through the pod end.
    pub gateways: Vec<IpAddr>,
}

/// Verifies the veth pair against `expected`; the error names the first difference.
/// Call it through [`run_on_own_thread`].
pub async fn check(expected: Expected) -> Result<(), LinkError> {
    let pod_ns = open_netns(&expected.pod_netns)?;
    if let Some(host_ns) = &expected.host_netns {
        enter(&open_netns(host_ns)?, host_ns)?;
    }
    let host = connect()?;
    if link_index(&host, &expected.host_if).await?.is_none() {
        return Err(LinkError::new(
            format!("checking host end {}", expected.host_if),
            "it does not exist",
        ));
    }
    enter(&pod_ns, &expected.pod_netns)?;
    let pod = connect()?;
    let ifname = &expected.pod_if;
    let action = || format!("checking {ifname} in {}", expected.pod_netns.display());
    let index = link_index(&pod, ifname)
        .await?
        .ok_or_else(|| LinkError::new(action(), "it does not exist"))?;
    let link = pod
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
        .map_err(|e| LinkError::new(action(), e))?
        .ok_or_else(|| LinkError::new(action(), "it disappeared"))?;
    if !link.header.flags.contains(LinkFlags::Up) {
        return Err(LinkError::new(action(), "it is down"));
    }
    if let Some(mac) = &expected.mac {
        let actual = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) => Some(format_mac(m)),
            _ => None,
        });
        if actual.as_deref() != Some(mac.to_ascii_lowercase().as_str()) {
            return Err(LinkError::new(
                action(),
                format!("MAC is {actual:?}, expected {mac}"),
            ));
        }
    }
    let addresses: Vec<IpNet> = pod
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .map_ok(|message| {
            message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => IpNet::new(*ip, message.header.prefix_len).ok(),
                _ => None,
            })
        })
        .try_filter_map(|a| async move { Ok(a) })
        .try_collect()
        .await
        .map_err(|e| LinkError::new(action(), e))?;
    for address in &expected.addresses {
        if !addresses.contains(address) {
            return Err(LinkError::new(
                action(),
                format!("address {address} missing (has {addresses:?})"),
            ));
        }
    }
    for gateway in &expected.gateways {
        if !has_default_route(&pod, index, *gateway).await? {
            return Err(LinkError::new(
                action(),
                format!("no default route via {gateway}"),
            ));
        }
    }
    Ok(())
}

async fn has_default_route(
    handle: &Handle,
    index: u32,
    gateway: IpAddr,
) -> Result<bool, LinkError> {
    let request = match gateway {
        IpAddr::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        IpAddr::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
    };
    let routes: Vec<_> = handle
        .route()
        .get(request)
        .execute()
        .try_collect()
        .await
        .map_err(|e| LinkError::new("listing routes", e))?;
    Ok(routes.iter().any(|route| {
        route.header.destination_prefix_length == 0
            && route.attributes.contains(&RouteAttribute::Oif(index))
            && route
                .attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::from(gateway)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(format_mac(&[0x0a, 0x72, 0, 0, 0, 5]), "0a:72:00:00:00:05");
        assert_eq!(transit_name("0123456789ab_h"), "0123456789ab__p");
        assert!(transit_name("0123456789abcdef").len() <= 15);
    }
}
