//! `/metrics` as operators consume it: the real `rovn-controller` (with a Neutron router
//! imported, a Subnet attached to it and one of its rows repaired, so that the labelled
//! families have samples) is scraped, the exposition is linted by `promtool check metrics`
//! (Debian's `prometheus` package, installed by `hack/deps.sh`), every family must be
//! documented in `docs/metrics.md` (and the document may name no other), and every metric the
//! Grafana dashboard `deploy/grafana/rovn-dashboard.json` queries must be in the scrape, its
//! expressions valid PromQL (`promtool check rules`).
//!
//! The agent serves no metrics (only its CNI socket): nothing to scrape there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use api::Vpc;
use api::condition::{READY, is_condition_true};
use controller::subnet::lrp_name;
use testenv::neutron::NeutronRouter;
use testenv::ovn::OvnEnv;
use testenv::poll::eventually;
use testenv::stack::{ControllerEnv, ControllerProcess, subnet_spec};

const REPAIRS_ROUTER_PORT: &str = "rovn_ovn_repairs_total{row=\"router-port\"}";

/// A file of the workspace, by its path from the root.
fn workspace_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn vpc_ready(vpc: &Vpc) -> bool {
    vpc.status
        .as_ref()
        .is_some_and(|s| is_condition_true(&s.conditions, READY))
}

/// The body of `/metrics`.
fn scrape(controller: &ControllerProcess) -> String {
    match controller.get("/metrics") {
        Some((200, body)) => body,
        other => panic!("GET /metrics: {other:?}"),
    }
}

/// Runs `promtool args…` with `input` on its standard input; panics unless it exits 0 and
/// prints no line (stdout or stderr) but those starting with one of `report` (its report of a
/// success), so that a lint problem fails too.
fn promtool(args: &[&str], input: &str, report: &[&str]) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running promtool (Debian's prometheus package; hack/deps.sh installs it): {e}")
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(input.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let noise: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty() && !report.iter().any(|r| line.starts_with(r)))
        .collect();
    assert!(
        out.status.success() && noise.is_empty(),
        "promtool {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}\ninput:\n{input}",
        out.status
    );
}

/// The Prometheus text format 0.0.4 rendering of an OpenMetrics 1.0 text exposition (what
/// the controller serves, the one encoding of prometheus-client), which is the format
/// `promtool check metrics` parses: OpenMetrics names a counter family without the
/// `_total` its samples carry, the 0.0.4 format names it like its samples. Everything else
/// is left as it is (`# EOF` and `# UNIT` are comments there; a type the 0.0.4 format lacks
/// makes promtool fail, as it should).
fn classic_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = families(openmetrics)
        .into_iter()
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut text = String::new();
    for line in openmetrics.lines() {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

/// Every family of an exposition with its type, from the `# TYPE` lines.
fn families(exposition: &str) -> Vec<(&str, &str)> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
        .collect()
}

/// The name a family's samples carry and queries use: a counter's ends in `_total`.
fn queried_name(family: &str, kind: &str) -> String {
    if kind == "counter" {
        format!("{family}_total")
    } else {
        family.to_owned()
    }
}

/// The metric names of the samples of an exposition.
fn sample_names(exposition: &str) -> BTreeSet<&str> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect()
}

/// Every identifier in `text` that starts with `rovn_` (a metric name of ours).
fn rovn_identifiers(text: &str) -> BTreeSet<&str> {
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rovn_") {
        let starts_word = !rest[..at].ends_with(is_part);
        let tail = &rest[at..];
        let len = tail.find(|c: char| !is_part(c)).unwrap_or(tail.len());
        if starts_word {
            found.insert(&tail[..len]);
        }
        rest = &tail[len..];
    }
    found
}

/// Every `expr` string in a Grafana dashboard model, with the title of its panel.
fn dashboard_exprs(value: &serde_json::Value, panel: &str, exprs: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            let title = map
                .get("title")
                .and_then(|t| t.as_str())
                .unwrap_or(panel)
                .to_owned();
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("expr", serde_json::Value::String(expr)) => {
                        exprs.push((title.clone(), expr.clone()))
                    }
                    _ => dashboard_exprs(child, &title, exprs),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, panel, exprs);
            }
        }
        _ => {}
    }
}

/// Checks the dashboard against a scrape: its data source is the `DS_PROMETHEUS` input
/// asked for at import, every metric it queries is exported, every query parses as PromQL
/// (with a range for Grafana's interval variables).
fn check_dashboard(dashboard: &str, scraped: &BTreeSet<&str>) {
    let model: serde_json::Value = serde_json::from_str(dashboard).expect("the dashboard is JSON");
    let inputs = model["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|input| input["name"] == "DS_PROMETHEUS" && input["pluginId"] == "prometheus"),
        "the dashboard asks for its Prometheus data source as input DS_PROMETHEUS: {inputs:?}"
    );
    let mut exprs = Vec::new();
    dashboard_exprs(&model, "", &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard queries nothing");
    let mut unknown = BTreeMap::new();
    for (panel, expr) in &exprs {
        let names = rovn_identifiers(expr);
        assert!(
            !names.is_empty(),
            "panel {panel:?} queries no rovn metric: {expr}"
        );
        for name in names.into_iter().filter(|n| !scraped.contains(n)) {
            unknown.insert(name, panel.as_str());
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the controller does not export (name: panel): \
         {unknown:?}; exported: {scraped:?}"
    );

    let mut rules = String::from("groups:\n  - name: rovn-dashboard\n    rules:\n");
    for (index, (_, expr)) in exprs.iter().enumerate() {
        let expr = ["$__rate_interval", "$__interval", "$__range"]
            .iter()
            .fold(expr.clone(), |expr, variable| expr.replace(variable, "5m"));
        let quoted = serde_json::to_string(&expr).expect("a JSON string is a YAML scalar");
        rules.push_str(&format!(
            "      - record: dashboard:panel{index}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("dashboard-rules.yaml");
    std::fs::write(&file, &rules).expect("writing the rules file");
    promtool(
        &["check", "rules", &file.display().to_string()],
        "",
        &["Checking ", "SUCCESS: "],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_match_the_docs_and_the_dashboard() -> anyhow::Result<()> {
    let env = ControllerEnv::start(OvnEnv::builder(), "metrics").await?;
    let (ovn, cluster) = (&env.ovn, &env.cluster);
    let controller = env.controller();

    // Work for every family: an import, a Subnet attached to the imported router, a repair.
    let router = NeutronRouter::create(ovn, "router1")?;
    let r1 = router.lr_name();
    cluster
        .wait_vpc(&r1, "imported and Ready", vpc_ready)
        .await?;
    cluster.create_namespace("net2").await?;
    cluster
        .create_ready_subnet("net2", subnet_spec(Some(&r1), "10.0.2.0/24", &["net2"]))
        .await?;
    ovn.nbctl(&["lrp-del", &lrp_name("net2", &r1)])?;
    eventually("the router port restored and counted", || async {
        controller
            .metric(REPAIRS_ROUTER_PORT)
            .filter(|repairs| *repairs >= 1.0)
    })
    .await;
    eventually("the import counted", || async {
        controller.metric("rovn_routers_imported") == Some(1.0)
    })
    .await;
    eventually("the pod reconciler synced", || async {
        controller.metric("rovn_pods_synced") == Some(1.0)
    })
    .await;

    let body = scrape(controller);
    assert!(
        body.ends_with("# EOF\n"),
        "an OpenMetrics exposition:\n{body}"
    );
    promtool(&["check", "metrics"], &classic_text(&body), &[]);

    // Every family documented, and the document names no other metric.
    let doc = read(&workspace_file("docs/metrics.md"));
    let exposed: BTreeSet<String> = families(&body)
        .into_iter()
        .map(|(family, kind)| queried_name(family, kind))
        .collect();
    assert!(!exposed.is_empty(), "no family in:\n{body}");
    let undocumented: Vec<&String> = exposed
        .iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/metrics.md (as `name`): {undocumented:?}"
    );
    let stale: Vec<&str> = rovn_identifiers(&doc)
        .into_iter()
        .filter(|name| !exposed.contains(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/metrics.md names metrics the controller does not export: {stale:?}; \
         exported: {exposed:?}"
    );

    // Every family the test made work for has samples, so the dashboard's names can be
    // checked against the samples themselves.
    let scraped = sample_names(&body);
    for name in &exposed {
        assert!(
            scraped.contains(name.as_str()),
            "no sample of {name}:\n{body}"
        );
    }
    check_dashboard(
        &read(&workspace_file("deploy/grafana/rovn-dashboard.json")),
        &scraped,
    );
    Ok(())
}

#[test]
fn counter_families_are_renamed_like_their_samples_for_promtool() {
    let openmetrics = "# HELP rovn_x Things, in things.\n# TYPE rovn_x counter\n\
                       rovn_x_total{kind=\"a\"} 2\n# HELP rovn_y Level.\n# TYPE rovn_y gauge\n\
                       rovn_y 1\n# EOF\n";
    assert_eq!(
        classic_text(openmetrics),
        "# HELP rovn_x_total Things, in things.\n# TYPE rovn_x_total counter\n\
         rovn_x_total{kind=\"a\"} 2\n# HELP rovn_y Level.\n# TYPE rovn_y gauge\n\
         rovn_y 1\n# EOF\n"
    );
    assert_eq!(
        sample_names(openmetrics),
        BTreeSet::from(["rovn_x_total", "rovn_y"])
    );
}

#[test]
fn rovn_identifiers_are_whole_metric_names() {
    let expr = "sum by (row) (rate(rovn_ovn_repairs_total{row=\"x\"}[5m])) / \
                max(rovn_routers_imported) + my_rovn_other";
    assert_eq!(
        rovn_identifiers(expr),
        BTreeSet::from(["rovn_ovn_repairs_total", "rovn_routers_imported"])
    );
}
