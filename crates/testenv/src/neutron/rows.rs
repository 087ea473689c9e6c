//! The proof that rovn never changes what Neutron owns: the Neutron-owned rows of the
//! Northbound database, snapshotted where the test (acting as Neutron) left them and
//! compared later.

use std::collections::HashSet;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::ovn::OvnEnv;

/// The rows of a canonical NB dump ([`OvnEnv::dump_nb`]) that Neutron owns: any row with a
/// `neutron:` key, Neutron's DHCP options (`subnet_id`) and the `neutron_pg_drop` group with
/// its ACLs, one per line after its table's name. References to rows of ours (rows with
/// `rovn:owner`) are left out of their columns: adding our own rows to a Neutron router's
/// `ports` or `static_routes` is the one change rovn may make to a Neutron row.
pub fn neutron_rows(dump: &str) -> Result<String> {
    let rows = || dump.lines().filter(|l| l.starts_with(' '));
    let ours: HashSet<String> = rows()
        .filter(|l| l.contains("\"rovn:owner\""))
        .filter_map(|l| {
            let row: Value = serde_json::from_str(l.trim()).ok()?;
            Some(row["_uuid"][1].as_str()?.to_owned())
        })
        .collect();
    let mut out = String::new();
    let mut table = "";
    for line in dump.lines() {
        if !line.starts_with(' ') {
            table = line;
            continue;
        }
        if line.contains("neutron:")
            || line.contains("subnet_id")
            || line.contains("neutron_pg_drop")
        {
            let mut row: Value = serde_json::from_str(line.trim())
                .with_context(|| format!("a row of the NB dump: {line}"))?;
            if let Some(columns) = row.as_object_mut() {
                for (column, value) in columns.iter_mut() {
                    if column != "_uuid" {
                        drop_refs(value, &ours);
                    }
                }
            }
            out.push_str(table);
            out.push(' ');
            out.push_str(&row.to_string());
            out.push('\n');
        }
    }
    Ok(out)
}

/// Removes references to `ours` from a dumped column value, normalising a one-element set
/// to its atom as `ovsdb-client dump` prints it.
fn drop_refs(value: &mut Value, ours: &HashSet<String>) {
    let is_ours =
        |atom: &Value| atom[0] == "uuid" && atom[1].as_str().is_some_and(|u| ours.contains(u));
    if is_ours(value) {
        *value = json!(["set", []]);
        return;
    }
    if value[0] == "set"
        && let Some(atoms) = value[1].as_array_mut()
    {
        atoms.retain(|a| !is_ours(a));
        if atoms.len() == 1 {
            *value = atoms[0].clone();
        }
    }
}

/// The Neutron-owned rows as the test (acting as Neutron) last left them, to prove rovn
/// never changes them. Shared by reference: [`neutron_writes`](Self::neutron_writes) takes
/// its new snapshot through `&self`.
///
/// ```no_run
/// # fn demo() -> anyhow::Result<()> {
/// use testenv::neutron::{NeutronRouter, NeutronRows};
/// let ovn = testenv::ovn::OvnEnv::builder().northd().start()?;
/// let neutron = NeutronRows::snapshot(&ovn)?;
/// let router = neutron.neutron_writes(&ovn, "create router1", || {
///     NeutronRouter::create(&ovn, "router1")
/// })?;
/// // ... rovn runs ...
/// neutron.check(&ovn)?;
/// // Acting as Neutron without a panic on a change before (e.g. in the lab):
/// neutron.check(&ovn)?;
/// router.delete(&ovn)?;
/// neutron.retake(&ovn)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NeutronRows {
    expected: Mutex<String>,
}

impl NeutronRows {
    /// Snapshot of the current Neutron rows.
    pub fn snapshot(ovn: &OvnEnv) -> Result<Self> {
        Ok(Self {
            expected: Mutex::new(neutron_rows(&ovn.dump_nb()?)?),
        })
    }

    /// Fails, showing both versions, when the Neutron rows are not byte for byte as in the
    /// last snapshot.
    pub fn check(&self, ovn: &OvnEnv) -> Result<()> {
        let now = neutron_rows(&ovn.dump_nb()?)?;
        let expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        if now != *expected {
            bail!("Neutron-owned rows changed:\n--- expected\n{expected}\n--- found\n{now}");
        }
        Ok(())
    }

    /// Takes a new snapshot (after the test, acting as Neutron, changed Neutron's rows).
    pub fn retake(&self, ovn: &OvnEnv) -> Result<()> {
        let now = neutron_rows(&ovn.dump_nb()?)?;
        *self.expected.lock().unwrap_or_else(|e| e.into_inner()) = now;
        Ok(())
    }

    /// Asserts the Neutron rows are as in the last snapshot (`when` names the moment).
    ///
    /// # Panics
    ///
    /// When they changed, or NB cannot be read.
    pub fn assert_unchanged(&self, ovn: &OvnEnv, when: &str) {
        if let Err(e) = self.check(ovn) {
            panic!("{when}: {e:#}");
        }
    }

    /// Asserts nothing changed since the last snapshot, then lets the test act as Neutron
    /// (`change`) and takes a new snapshot.
    ///
    /// # Panics
    ///
    /// When the rows changed before `change`, or NB cannot be read.
    pub fn neutron_writes<T>(&self, ovn: &OvnEnv, what: &str, change: impl FnOnce() -> T) -> T {
        self.assert_unchanged(ovn, &format!("before: {what}"));
        let result = change();
        self.retake(ovn)
            .unwrap_or_else(|e| panic!("after: {what}: {e:#}"));
        result
    }
}
