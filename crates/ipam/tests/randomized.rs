//! Randomized operations (fixed seed) checked against a simple model of the allocator:
//! no address or MAC held twice, dynamic allocation takes the lowest never-used address or
//! else the oldest release, counts match, and a restore from the final state rebuilds it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use ipam::{AddressRequest, AllocError, Subnet, SubnetConfig};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The model: never-used free addresses, released queue, holders.
struct Model {
    never_used: BTreeSet<u32>,
    released: VecDeque<u32>,
    held: HashMap<String, u32>,
}

impl Model {
    fn expected_dynamic(&self) -> Option<u32> {
        self.never_used
            .first()
            .copied()
            .or_else(|| self.released.front().copied())
    }

    fn take(&mut self, addr: u32, owner: &str) {
        if !self.never_used.remove(&addr) {
            self.released.retain(|a| *a != addr);
        }
        self.held.insert(owner.to_owned(), addr);
    }
}

fn v4(addr: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(addr))
}

#[test]
fn random_operations_match_the_model() {
    // 10.0.0.0/23: 512 addresses, gateway .1, excluded 10.0.0.100..10.0.0.149.
    let config = SubnetConfig::parse(
        None,
        "10.0.0.0/23",
        None,
        &["10.0.0.100..10.0.0.149".into()],
    )
    .unwrap();
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let mut subnet = Subnet::new("rand", config.clone());
    let mut model = Model {
        never_used: (base + 2..base + 511)
            .filter(|a| !(base + 100..base + 150).contains(a))
            .collect(),
        released: VecDeque::new(),
        held: HashMap::new(),
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut reused, mut exhausted) = (0, 0);
    for step in 0..20_000 {
        let owner = format!("ns/p{}", rng.below(600));
        match rng.below(10) {
            0..=6 => {
                let result = subnet.allocate(&owner, &AddressRequest::default());
                match model.held.get(&owner) {
                    Some(&addr) => assert_eq!(
                        result.unwrap().v4,
                        Some(Ipv4Addr::from(addr)),
                        "step {step}"
                    ),
                    None => match model.expected_dynamic() {
                        Some(addr) => {
                            reused += usize::from(model.never_used.is_empty());
                            assert_eq!(
                                result.unwrap().v4,
                                Some(Ipv4Addr::from(addr)),
                                "step {step}"
                            );
                            model.take(addr, &owner);
                        }
                        None => {
                            exhausted += 1;
                            assert!(
                                matches!(result, Err(AllocError::Exhausted { .. })),
                                "step {step}"
                            );
                        }
                    },
                }
            }
            7 => {
                let addr = base + 2 + rng.below(509) as u32;
                let request = AddressRequest {
                    ips: vec![v4(addr)],
                    mac: None,
                };
                let result = subnet.allocate(&owner, &request);
                let holder = model
                    .held
                    .iter()
                    .find(|(_, a)| **a == addr)
                    .map(|(o, _)| o.clone());
                if let Some(&mine) = model.held.get(&owner) {
                    if mine == addr {
                        result.unwrap();
                    } else {
                        assert!(
                            matches!(result, Err(AllocError::OwnerHasOtherAddress { .. })),
                            "step {step}"
                        );
                    }
                } else if (base + 100..base + 150).contains(&addr) {
                    assert!(
                        matches!(result, Err(AllocError::Reserved { .. })),
                        "step {step}"
                    );
                } else if let Some(holder) = holder {
                    assert_eq!(
                        result,
                        Err(AllocError::AddressInUse {
                            ip: v4(addr),
                            owner: holder
                        }),
                        "step {step}"
                    );
                } else {
                    assert_eq!(result.unwrap().v4, Some(Ipv4Addr::from(addr)));
                    model.take(addr, &owner);
                }
            }
            _ => {
                let released = subnet.release(&owner);
                match model.held.remove(&owner) {
                    Some(addr) => {
                        assert_eq!(released.unwrap().v4, Some(Ipv4Addr::from(addr)));
                        model.released.push_back(addr);
                    }
                    None => assert!(released.is_none()),
                }
            }
        }
        let counts = subnet.counts();
        assert_eq!(counts.v4_using, model.held.len(), "step {step}");
        assert_eq!(
            counts.v4_available,
            (model.never_used.len() + model.released.len()) as u128,
            "step {step}"
        );
    }

    assert!(
        reused > 100 && exhausted > 100,
        "the walk must reach reuse and exhaustion: {reused} {exhausted}"
    );

    // Rebuild from the final state as the controller would at start-up.
    let mut rebuilt = Subnet::new("rand", config);
    let mut macs = BTreeSet::new();
    for (owner, allocation) in subnet.allocations() {
        assert!(macs.insert(allocation.mac), "MAC held twice");
        let ips: Vec<IpAddr> = allocation.ips().collect();
        assert_eq!(
            rebuilt.restore(owner, &ips, Some(allocation.mac)).unwrap(),
            *allocation
        );
    }
    assert_eq!(rebuilt.counts().v4_using, subnet.counts().v4_using);
    for (owner, allocation) in subnet.allocations() {
        let ips: Vec<IpAddr> = allocation.ips().collect();
        let other = format!("{owner}-dup");
        assert!(matches!(
            rebuilt.restore(&other, &ips, None),
            Err(AllocError::AddressInUse { .. })
        ));
    }
}
