//! Prometheus metrics of the controller, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming a reconciled kind and its outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `router-import`, `vpc`, `subnet`, `namespace`, `pod`, `service`,
    /// `service-group`, `node-link` or `network-policy`.
    pub kind: String,
    /// `ok`, or `error` (a failure or a wait for something else, retried).
    pub result: String,
}

/// Labels naming what kind of OVN row was restored.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabels {
    /// `router-port`, `switch-port`, `load-balancer`, `node-link` or
    /// `network-policy`.
    pub row: String,
}

/// Every metric the controller exports.
#[derive(Default)]
pub struct Metrics {
    /// Neutron routers currently imported as Vpcs.
    pub routers_imported: Gauge,
    /// Logical routers left out of the import: neither Neutron's nor ours.
    pub routers_not_neutron: Gauge,
    /// Reconciliations by kind and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Rows of ours that something else deleted or changed and we restored.
    pub repairs: Family<RepairLabels, Counter>,
    /// Change events received from the OVN Northbound monitor.
    pub nb_events: Counter,
    /// 1 once the pod reconciler processed every pod, port and IP resource
    /// seen at start-up (IPAM rebuilt, leftovers removed).
    pub pods_synced: Gauge,
}

impl Metrics {
    /// Registers every metric under the `rovn` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let rovn = registry.sub_registry_with_prefix("rovn");
        rovn.register(
            "routers_imported",
            "Neutron logical routers imported as Vpcs, in routers (set by the leader, 0 on a standby)",
            self.routers_imported.clone(),
        );
        rovn.register(
            "routers_not_neutron",
            "Logical routers neither Neutron's (no neutron:router_name) nor rovn's, hence not imported, \
             in routers (set by the leader, 0 on a standby)",
            self.routers_not_neutron.clone(),
        );
        rovn.register(
            "reconciles",
            "Reconciles by kind and result, in reconciles (result error also counts waits for \
             something else; both are retried)",
            self.reconciles.clone(),
        );
        rovn.register(
            "ovn_repairs",
            "Restorations of rovn's Northbound rows that another client deleted or changed, by row \
             kind, in repairs",
            self.repairs.clone(),
        );
        rovn.register(
            "nb_events",
            "Row changes (insert, modify, delete) received from the OVN Northbound monitor while \
             leading, in row events",
            self.nb_events.clone(),
        );
        rovn.register(
            "pods_synced",
            "1 once the leader reconciled every pod, logical port and IP resource it saw at start-up, \
             else 0 (boolean)",
            self.pods_synced.clone(),
        );
    }

    /// Counts one reconciliation of `kind` with its outcome.
    pub fn reconciled(&self, kind: &str, ok: bool) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_string(),
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// Counts one restored row of kind `row`.
    pub fn repaired(&self, row: &str) {
        self.repairs
            .get_or_create(&RepairLabels {
                row: row.to_string(),
            })
            .inc();
    }
}
