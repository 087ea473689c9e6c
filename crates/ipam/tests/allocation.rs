//! Behaviour of the public allocator API.

use std::net::IpAddr;

use ipam::{
    AddressRequest, AllocError, Allocation, Displaced, Family, GATEWAY_MAC_OWNER, Ipam, MacAddr,
    ReservedReason, Subnet, SubnetConfig, SubnetCounts,
};

fn config(cidr: &str, gateway: Option<&str>, exclude: &[&str]) -> SubnetConfig {
    let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
    SubnetConfig::parse(None, cidr, gateway, &exclude).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn dynamic() -> AddressRequest {
    AddressRequest::default()
}

fn v4_of(subnet: &mut Subnet, owner: &str) -> String {
    subnet
        .allocate(owner, &dynamic())
        .unwrap()
        .v4
        .unwrap()
        .to_string()
}

#[test]
fn lowest_first_skipping_gateway_and_excludes() {
    let mut s = Subnet::new(
        "net2",
        config("10.0.2.0/24", None, &["10.0.2.3..10.0.2.5", "10.0.2.7"]),
    );
    let got: Vec<String> = (0..4).map(|i| v4_of(&mut s, &format!("ns/p{i}"))).collect();
    assert_eq!(got, ["10.0.2.2", "10.0.2.6", "10.0.2.8", "10.0.2.9"]);
}

#[test]
fn released_addresses_are_reused_last_oldest_first() {
    let mut s = Subnet::new("tiny", config("10.0.0.0/29", None, &[]));
    // Usable: .2 .. .6 (network .0, gateway .1, broadcast .7).
    for i in 2..=4 {
        v4_of(&mut s, &format!("ns/p{i}"));
    }
    s.release("ns/p3").unwrap();
    s.release("ns/p2").unwrap();
    assert_eq!(
        v4_of(&mut s, "ns/a"),
        "10.0.0.5",
        "never-used addresses come first"
    );
    assert_eq!(v4_of(&mut s, "ns/b"), "10.0.0.6");
    assert_eq!(v4_of(&mut s, "ns/c"), "10.0.0.3", "then the oldest release");
    assert_eq!(v4_of(&mut s, "ns/d"), "10.0.0.2");
    assert_eq!(
        s.allocate("ns/e", &dynamic()),
        Err(AllocError::Exhausted {
            subnet: "tiny".into(),
            family: Family::V4
        })
    );
    assert!(
        s.get("ns/e").is_none(),
        "a failed allocation leaves nothing behind"
    );
}

#[test]
fn static_take_of_released_address_keeps_queue_order() {
    let mut s = Subnet::new("tiny", config("10.0.0.0/29", None, &[]));
    for i in 2..=6 {
        v4_of(&mut s, &format!("ns/p{i}"));
    }
    s.release("ns/p2");
    s.release("ns/p3");
    s.release("ns/p4");
    // Take .3 statically, release it again: it goes to the back of the queue.
    let req = AddressRequest {
        ips: vec![ip("10.0.0.3")],
        mac: None,
    };
    s.allocate("ns/static", &req).unwrap();
    s.release("ns/static");
    let order: Vec<String> = ["a", "b", "c"].iter().map(|o| v4_of(&mut s, o)).collect();
    assert_eq!(order, ["10.0.0.2", "10.0.0.4", "10.0.0.3"]);
}

#[test]
fn idempotent_allocation_and_release() {
    let mut s = Subnet::new("net2", config("10.0.2.0/24", None, &[]));
    let first = s.allocate("ns/pod", &dynamic()).unwrap();
    assert_eq!(s.allocate("ns/pod", &dynamic()).unwrap(), first);
    let same_static = AddressRequest {
        ips: first.ips().collect(),
        mac: Some(first.mac),
    };
    assert_eq!(s.allocate("ns/pod", &same_static).unwrap(), first);
    assert_eq!(s.counts().v4_using, 1);
    assert_eq!(s.owner_of(ip("10.0.2.2")), Some("ns/pod"));
    assert_eq!(s.release("ns/pod"), Some(first));
    assert_eq!(s.release("ns/pod"), None);
    assert_eq!(s.owner_of(ip("10.0.2.2")), None);
    assert_eq!(s.mac_owner(first.mac), None);
}

#[test]
fn static_addresses_and_conflicts() {
    let mut s = Subnet::new(
        "net2",
        config(
            "10.0.2.0/24",
            Some("10.0.2.254"),
            &["10.0.2.100..10.0.2.110"],
        ),
    );
    let req = |text: &str| AddressRequest::from_annotations(Some(text), None).unwrap();
    let a = s.allocate("ns/a", &req("10.0.2.50")).unwrap();
    assert_eq!(a.v4.unwrap().to_string(), "10.0.2.50");
    assert_eq!(
        s.allocate("ns/b", &req("10.0.2.50")),
        Err(AllocError::AddressInUse {
            ip: ip("10.0.2.50"),
            owner: "ns/a".into()
        })
    );
    assert!(matches!(
        s.allocate("ns/b", &req("10.0.3.1")),
        Err(AllocError::OutsideSubnet { .. })
    ));
    let reserved = |text: &str, reason| AllocError::Reserved {
        ip: ip(text),
        subnet: "net2".into(),
        reason,
    };
    assert_eq!(
        s.allocate("ns/b", &req("10.0.2.105")),
        Err(reserved("10.0.2.105", ReservedReason::Excluded))
    );
    assert_eq!(
        s.allocate("ns/b", &req("10.0.2.254")),
        Err(reserved("10.0.2.254", ReservedReason::Gateway))
    );
    assert_eq!(
        s.allocate("ns/b", &req("10.0.2.0")),
        Err(reserved("10.0.2.0", ReservedReason::Network))
    );
    assert_eq!(
        s.allocate("ns/b", &req("10.0.2.255")),
        Err(reserved("10.0.2.255", ReservedReason::Broadcast))
    );
    assert!(matches!(
        s.allocate("ns/b", &req("fd00::5")),
        Err(AllocError::FamilyNotInSubnet { .. })
    ));
    assert!(matches!(
        s.allocate("ns/a", &req("10.0.2.51")),
        Err(AllocError::OwnerHasOtherAddress { .. })
    ));
    assert_eq!(s.owner_count(), 1);
    // The default gateway moved to .254, so .1 is an ordinary address now.
    assert_eq!(v4_of(&mut s, "ns/c"), "10.0.2.1");
    // A dynamic allocation never lands on a statically held address.
    for i in 0..60 {
        let got = v4_of(&mut s, &format!("ns/d{i}"));
        assert_ne!(got, "10.0.2.50");
    }
}

#[test]
fn annotation_parsing() {
    let r = AddressRequest::from_annotations(Some("10.0.0.5, fd00::5"), Some("0A:72:00:00:00:09"))
        .unwrap();
    assert_eq!(r.ips, vec![ip("10.0.0.5"), ip("fd00::5")]);
    assert_eq!(r.mac.unwrap().to_string(), "0a:72:00:00:00:09");
    assert_eq!(
        AddressRequest::from_annotations(Some(""), Some(" ")).unwrap(),
        AddressRequest::default()
    );
    assert_eq!(
        AddressRequest::from_annotations(Some("10.0.0.300"), None),
        Err(AllocError::InvalidAddress("10.0.0.300".into()))
    );
    assert!(matches!(
        AddressRequest::from_annotations(None, Some("ff:ff:ff:ff:ff:ff")),
        Err(AllocError::InvalidMac(_))
    ));
}

#[test]
fn macs_generated_unique_static_and_conflicting() {
    let mut s = Subnet::new("net2", config("10.0.2.0/24", None, &[]));
    let a = s.allocate("ns/a", &dynamic()).unwrap();
    assert_eq!(a.mac.0[..2], [0x0a, 0x72]);
    assert_ne!(a.mac, s.gateway_mac());
    assert_eq!(s.mac_owner(s.gateway_mac()), Some(GATEWAY_MAC_OWNER));
    let wanted: MacAddr = "fa:16:3e:11:22:33".parse().unwrap();
    let b = s
        .allocate(
            "ns/b",
            &AddressRequest {
                ips: vec![],
                mac: Some(wanted),
            },
        )
        .unwrap();
    assert_eq!(b.mac, wanted);
    assert_eq!(
        s.allocate(
            "ns/c",
            &AddressRequest {
                ips: vec![],
                mac: Some(wanted)
            }
        ),
        Err(AllocError::MacInUse {
            mac: wanted,
            owner: "ns/b".into()
        })
    );
    assert_eq!(
        s.allocate(
            "ns/c",
            &AddressRequest {
                ips: vec![],
                mac: Some(s.gateway_mac())
            }
        ),
        Err(AllocError::MacInUse {
            mac: s.gateway_mac(),
            owner: GATEWAY_MAC_OWNER.into()
        })
    );
    assert!(matches!(
        s.allocate(
            "ns/a",
            &AddressRequest {
                ips: vec![],
                mac: Some(wanted)
            }
        ),
        Err(AllocError::OwnerHasOtherMac { .. })
    ));
    // Generated MACs are stable for an owner across a fresh allocator (restart).
    let mut again = Subnet::new("net2", config("10.0.2.0/24", None, &[]));
    assert_eq!(again.allocate("ns/a", &dynamic()).unwrap().mac, a.mac);
    assert_eq!(again.gateway_mac(), s.gateway_mac());
    // 2000 owners: all MACs distinct.
    let mut big = Subnet::new("big", config("10.1.0.0/16", None, &[]));
    let mut macs = std::collections::HashSet::new();
    for i in 0..2000 {
        assert!(macs.insert(big.allocate(&format!("ns/p{i}"), &dynamic()).unwrap().mac));
    }
}

#[test]
fn dual_stack() {
    let mut s = Subnet::new(
        "dual",
        SubnetConfig::parse(
            Some("Dual"),
            "10.0.2.0/24,fd00:2::/120",
            None,
            &["fd00:2::2".into()],
        )
        .unwrap(),
    );
    let a = s.allocate("ns/a", &dynamic()).unwrap();
    assert_eq!(a.v4.unwrap().to_string(), "10.0.2.2");
    assert_eq!(a.v6.unwrap().to_string(), "fd00:2::3");
    assert_eq!(a.ip_address_annotation(), "10.0.2.2,fd00:2::3");
    let round_trip =
        AddressRequest::from_annotations(Some(&a.ip_address_annotation()), None).unwrap();
    assert_eq!(s.allocate("ns/a", &round_trip).unwrap(), a);
    let b = s
        .allocate(
            "ns/b",
            &AddressRequest::from_annotations(Some("10.0.2.9"), None).unwrap(),
        )
        .unwrap();
    assert_eq!(b.v4.unwrap().to_string(), "10.0.2.9");
    assert_eq!(b.v6.unwrap().to_string(), "fd00:2::4");
    let counts = s.counts();
    // IPv4: 256 - network - broadcast - gateway = 253; IPv6: 256 - network - gateway - 1 excluded = 253.
    assert_eq!(
        counts,
        SubnetCounts {
            v4_available: 251,
            v4_using: 2,
            v6_available: 251,
            v6_using: 2
        }
    );
    // The IPv6 pool's last address (no broadcast in IPv6) is assignable.
    s.allocate(
        "ns/c",
        &AddressRequest::from_annotations(Some("fd00:2::ff"), None).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        s.allocate(
            "ns/d",
            &AddressRequest::from_annotations(Some("10.0.2.20,10.0.2.21"), None).unwrap()
        ),
        Err(AllocError::DuplicateFamily(Family::V4))
    ));
}

#[test]
fn dual_stack_exhaustion_of_one_family_changes_nothing() {
    let mut s = Subnet::new("dual", config("10.0.0.0/24,fd00::/126", None, &[]));
    // IPv6 /126: network ::0, gateway ::1, usable ::2 ::3.
    s.allocate("ns/a", &dynamic()).unwrap();
    s.allocate("ns/b", &dynamic()).unwrap();
    let before = s.counts();
    assert_eq!(
        s.allocate("ns/c", &dynamic()),
        Err(AllocError::Exhausted {
            subnet: "dual".into(),
            family: Family::V6
        })
    );
    assert_eq!(s.counts(), before);
}

#[test]
fn counts_for_a_slash_16_and_a_slash_64() {
    let s = Subnet::new(
        "big",
        config("10.16.0.0/16", None, &["10.16.0.0..10.16.0.255"]),
    );
    // 65536 - 256 excluded (includes network and gateway) - broadcast.
    assert_eq!(s.counts().v4_available, 65536 - 256 - 1);
    let s = Subnet::new("v6", config("fd00::/64", None, &[]));
    assert_eq!(s.counts().v6_available, (1u128 << 64) - 2);
}

#[test]
fn restore_rebuilds_and_refuses_double_holders() {
    let mut ipam = Ipam::new();
    ipam.upsert_subnet("net2", config("10.0.2.0/24", None, &["10.0.2.20"]))
        .unwrap();
    let mac: MacAddr = "0a:72:00:00:00:01".parse().unwrap();
    let a = ipam
        .restore("net2", "ns/a", &[ip("10.0.2.7")], Some(mac))
        .unwrap();
    assert_eq!(a.mac, mac);
    // Idempotent.
    assert_eq!(
        ipam.restore("net2", "ns/a", &[ip("10.0.2.7")], Some(mac))
            .unwrap(),
        a
    );
    assert_eq!(
        ipam.restore("net2", "ns/a", &[ip("10.0.2.7")], None)
            .unwrap(),
        a
    );
    // Conflicts are reported, not overwritten.
    assert_eq!(
        ipam.restore("net2", "ns/b", &[ip("10.0.2.7")], None),
        Err(AllocError::AddressInUse {
            ip: ip("10.0.2.7"),
            owner: "ns/a".into()
        })
    );
    assert_eq!(
        ipam.restore("net2", "ns/b", &[ip("10.0.2.8")], Some(mac)),
        Err(AllocError::MacInUse {
            mac,
            owner: "ns/a".into()
        })
    );
    assert!(matches!(
        ipam.restore("net2", "ns/a", &[ip("10.0.2.8")], None),
        Err(AllocError::OwnerHasOtherAddress { .. })
    ));
    assert!(ipam.subnet("net2").unwrap().get("ns/b").is_none());
    assert_eq!(ipam.subnet("net2").unwrap().owner_of(ip("10.0.2.8")), None);
    // An excluded address held from before is accepted and counted as used.
    ipam.restore("net2", "ns/old", &[ip("10.0.2.20")], None)
        .unwrap();
    assert!(matches!(
        ipam.restore("net2", "ns/gw", &[ip("10.0.2.1")], None),
        Err(AllocError::Reserved {
            reason: ReservedReason::Gateway,
            ..
        })
    ));
    assert!(matches!(
        ipam.restore("net2", "ns/x", &[ip("10.9.9.9")], None),
        Err(AllocError::OutsideSubnet { .. })
    ));
    assert_eq!(
        ipam.restore("nope", "ns/x", &[], None),
        Err(AllocError::UnknownSubnet("nope".into()))
    );
    let counts = ipam.subnet("net2").unwrap().counts();
    assert_eq!(counts.v4_using, 2);
    assert_eq!(counts.v4_available, 253 - 1 - 1);
    // Dynamic allocation after restore skips restored addresses; releasing the excluded
    // address does not make it allocatable.
    ipam.release("net2", "ns/old").unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..251 {
        let got = ipam
            .allocate("net2", &format!("ns/n{i}"), &dynamic())
            .unwrap()
            .v4
            .unwrap();
        assert!(got.to_string() != "10.0.2.7" && got.to_string() != "10.0.2.20");
        assert!(seen.insert(got));
    }
    assert!(matches!(
        ipam.allocate("net2", "ns/last", &dynamic()),
        Err(AllocError::Exhausted { .. })
    ));
}

#[test]
fn restore_partial_then_allocate_fills_missing_family() {
    let mut s = Subnet::new("dual", config("10.0.0.0/24,fd00::/64", None, &[]));
    let restored = s.restore("ns/a", &[ip("10.0.0.9")], None).unwrap();
    assert_eq!(restored.v6, None);
    let full = s.allocate("ns/a", &dynamic()).unwrap();
    assert_eq!(full.v4, restored.v4);
    assert_eq!(full.mac, restored.mac);
    assert_eq!(full.v6.unwrap().to_string(), "fd00::2");
}

#[test]
fn reconfigure_keeps_addresses_in_range() {
    let mut ipam = Ipam::new();
    ipam.upsert_subnet("net", config("10.0.0.0/24", None, &[]))
        .unwrap();
    for i in 0..6 {
        ipam.allocate("net", &format!("ns/p{i}"), &dynamic())
            .unwrap(); // .2 .. .7
    }
    ipam.release("net", "ns/p1"); // .3 released
    let static_high = AddressRequest::from_annotations(Some("10.0.0.200"), None).unwrap();
    ipam.allocate("net", "ns/high", &static_high).unwrap();
    // Shrink to /25 and exclude .5 (held by p3, which keeps it).
    let displaced = ipam
        .upsert_subnet("net", config("10.0.0.0/25", None, &["10.0.0.5"]))
        .unwrap();
    assert_eq!(
        displaced,
        vec![Displaced {
            owner: "ns/high".into(),
            ip: ip("10.0.0.200")
        }]
    );
    let s = ipam.subnet("net").unwrap();
    assert_eq!(s.owner_of(ip("10.0.0.5")), Some("ns/p3"));
    assert_eq!(s.get("ns/high").unwrap().v4, None);
    assert_eq!(s.counts().v4_using, 5);
    // 128 - network - broadcast - gateway - excluded .5 - 4 other held = 121... (.5 is held and excluded)
    assert_eq!(s.counts().v4_available, 128 - 3 - 5);
    // .3 is still "released": handed out only after never-used addresses.
    let got = ipam.allocate("net", "ns/new", &dynamic()).unwrap();
    assert_eq!(got.v4.unwrap().to_string(), "10.0.0.8");
    // The displaced owner gets a fresh address on its next allocation.
    let high = ipam.allocate("net", "ns/high", &dynamic()).unwrap();
    assert_eq!(high.v4.unwrap().to_string(), "10.0.0.9");
    // A new gateway that is held is refused, nothing changes.
    assert_eq!(
        ipam.upsert_subnet("net", config("10.0.0.0/25", Some("10.0.0.2"), &[])),
        Err(AllocError::GatewayInUse {
            gateway: ip("10.0.0.2"),
            owner: "ns/p0".into()
        })
    );
    assert_eq!(
        ipam.subnet("net").unwrap().config(),
        &config("10.0.0.0/25", None, &["10.0.0.5"])
    );
    // Growing back to a /16 keeps everything.
    assert_eq!(
        ipam.upsert_subnet("net", config("10.0.0.0/16", None, &[]))
            .unwrap(),
        vec![]
    );
    // Adding IPv6 (Dual): owners keep IPv4 and get IPv6 on their next allocation.
    assert_eq!(
        ipam.upsert_subnet("net", config("10.0.0.0/16,fd00::/64", None, &[]))
            .unwrap(),
        vec![]
    );
    let p0 = ipam.allocate("net", "ns/p0", &dynamic()).unwrap();
    assert_eq!(p0.v4.unwrap().to_string(), "10.0.0.2");
    assert!(p0.v6.is_some());
    assert!(ipam.remove_subnet("net").is_some());
    assert!(matches!(
        ipam.allocate("net", "ns/p0", &dynamic()),
        Err(AllocError::UnknownSubnet(_))
    ));
}

/// Two VPCs' Subnets with the same CIDR: dynamic addresses differ while any is left (a node
/// reaches its pods by address alone), then are shared; static ones are given as asked.
#[test]
fn overlapping_subnets_of_other_vpcs_do_not_share_dynamic_addresses_until_full() {
    let mut ipam = Ipam::new();
    ipam.upsert_subnet("tenant-a", config("10.0.2.0/29", None, &[]))
        .unwrap();
    ipam.upsert_subnet("tenant-b", config("10.0.2.0/29", None, &[]))
        .unwrap();
    let v4 = |a: Allocation| a.v4.unwrap().to_string();
    let a1 = v4(ipam.allocate("tenant-a", "a1", &dynamic()).unwrap());
    let b1 = v4(ipam.allocate("tenant-b", "b1", &dynamic()).unwrap());
    let a2 = v4(ipam.allocate("tenant-a", "a2", &dynamic()).unwrap());
    assert_eq!(
        (a1.as_str(), b1.as_str(), a2.as_str()),
        ("10.0.2.2", "10.0.2.3", "10.0.2.4")
    );
    // Five usable addresses (.2–.6): once every one is held somewhere, they are shared.
    for owner in ["b2", "b3", "b4", "b5"] {
        ipam.allocate("tenant-b", owner, &dynamic()).unwrap();
    }
    let b = ipam.subnet("tenant-b").unwrap();
    assert!(
        b.owner_of(ip("10.0.2.2")).is_some(),
        "tenant-b filled up, sharing at the end"
    );
}
