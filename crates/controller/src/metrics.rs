//! Prometheus metrics of the controller, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming a reconciled kind and its outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `vpc`, `subnet`, `pod`, `router-import`...
    pub kind: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels naming what kind of OVN row was restored.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabels {
    /// `router-port`, `switch-port`, `router`...
    pub row: String,
}

/// Every metric the controller exports.
#[derive(Default)]
pub struct Metrics {
    /// Neutron routers currently imported as Vpcs.
    pub routers_imported: Gauge,
    /// Logical routers left out of the import because Neutron does not own them.
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
            "Neutron logical routers imported as Vpcs",
            self.routers_imported.clone(),
        );
        rovn.register(
            "routers_not_neutron",
            "Logical routers not imported because they lack neutron:router_name",
            self.routers_not_neutron.clone(),
        );
        rovn.register(
            "reconciles",
            "Reconciliations by kind and result",
            self.reconciles.clone(),
        );
        rovn.register(
            "ovn_repairs",
            "Rows of ours deleted or changed by another writer and restored",
            self.repairs.clone(),
        );
        rovn.register(
            "nb_events",
            "Change events received from the OVN Northbound monitor",
            self.nb_events.clone(),
        );
        rovn.register(
            "pods_synced",
            "1 once every pod, port and IP resource seen at start-up was reconciled",
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
