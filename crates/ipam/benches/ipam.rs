//! Prints allocator figures: 10,000 dynamic allocations in a /16, 10,000 restores,
//! and allocations once only released addresses are left.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use ipam::{AddressRequest, Subnet, SubnetConfig};

const OWNERS: usize = 10_000;

fn per_second(count: usize, seconds: f64) -> f64 {
    count as f64 / seconds
}

fn main() {
    let config = SubnetConfig::parse(
        Some("Dual"),
        "10.16.0.0/16,fd00:16::/64",
        None,
        &["10.16.0.2..10.16.0.255".into()],
    )
    .expect("valid bench config");
    let owners: Vec<String> = (0..OWNERS).map(|i| format!("bench/pod-{i}")).collect();

    let mut subnet = Subnet::new("bench", config.clone());
    let start = Instant::now();
    for owner in &owners {
        black_box(
            subnet
                .allocate(owner, &AddressRequest::default())
                .expect("free addresses"),
        );
    }
    let allocate = start.elapsed().as_secs_f64();
    println!(
        "allocate {OWNERS} dual-stack owners in a /16: {:.1} ms ({:.0}/s)",
        allocate * 1e3,
        per_second(OWNERS, allocate)
    );

    let held: Vec<(String, Vec<IpAddr>, _)> = subnet
        .allocations()
        .map(|(owner, a)| (owner.to_owned(), a.ips().collect(), a.mac))
        .collect();
    let start = Instant::now();
    let mut rebuilt = Subnet::new("bench", config.clone());
    for (owner, ips, mac) in &held {
        black_box(
            rebuilt
                .restore(owner, ips, Some(*mac))
                .expect("no conflict"),
        );
    }
    let restore = start.elapsed().as_secs_f64();
    println!(
        "restore {OWNERS} owners: {:.1} ms ({:.0}/s)",
        restore * 1e3,
        per_second(OWNERS, restore)
    );

    // Exhaust a /22 so that only released addresses are left, then churn.
    let small = SubnetConfig::parse(None, "10.20.0.0/22", None, &[]).expect("valid");
    let mut subnet = Subnet::new("small", small);
    let mut n = 0;
    while subnet
        .allocate(&format!("fill/{n}"), &AddressRequest::default())
        .is_ok()
    {
        n += 1;
    }
    for i in 0..n {
        subnet.release(&format!("fill/{i}"));
    }
    let start = Instant::now();
    for i in 0..n {
        black_box(
            subnet
                .allocate(&format!("again/{i}"), &AddressRequest::default())
                .expect("released"),
        );
    }
    let reuse = start.elapsed().as_secs_f64();
    println!(
        "allocate {n} owners from released addresses only: {:.1} ms ({:.0}/s)",
        reuse * 1e3,
        per_second(n, reuse)
    );
}
