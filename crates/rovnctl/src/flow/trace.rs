//! Reading the `--detailed` output of `ovn-trace` (OVN 23.03), a pure
//! function of the text.
//!
//! The output is a tree printed depth first: titled sections, each title
//! underlined with dashes (pipelines `ingress(dp="…", inport="…")`,
//! `egress(dp="…", inport="…", outport="…")`, `multicast(dp="…",
//! mcgroup="…")`, and transformations such as `ct_next(ct_state=new|trk)`,
//! `arp` or `tcp_reset`), and the logical flow tables reached, one line each
//! (`13. lr_in_ip_routing (northd.c:10388): ip4.dst == 10.0.1.0/24, priority
//! 74, uuid 159906ba`, or `N. stage: no match (implicit drop)`), followed by
//! the flow's actions, one per line (`drop;`, `/* output to "p", type "" */`,
//! `*** TTL underflow`). The print order is the order of execution, so
//! [`Trace::items`] is read from the first to the first item that ends the
//! packet's journey.

/// A parsed `ovn-trace --detailed` output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    /// The microflow as ovn-trace understood it (the first line, `# tcp,…`).
    pub microflow: Option<String>,
    /// Sections and tables in print (execution) order.
    pub items: Vec<Item>,
}

/// One element of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A titled section.
    Section(Section),
    /// A logical flow table and the actions of its matching flow.
    Stage(Stage),
}

impl Item {
    /// The item's lines as printed (title, or table line, then actions).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Item::Section(section) => {
                let mut lines = vec![section.title.clone()];
                lines.extend(section.actions.iter().map(|a| format!("    {a}")));
                lines
            }
            Item::Stage(stage) => {
                let mut lines = vec![stage.line.clone()];
                lines.extend(stage.actions.iter().map(|a| format!("    {a}")));
                lines
            }
        }
    }
}

/// A titled section: a pipeline or a transformation of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Nesting level (indentation / 4); forks such as multicast groups nest.
    pub depth: usize,
    /// The title as printed.
    pub title: String,
    /// What the title says.
    pub kind: SectionKind,
    /// Actions printed directly under the title (e.g. the body of `arp`).
    pub actions: Vec<String>,
}

/// What a section is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionKind {
    /// A logical datapath's ingress or egress pipeline.
    Pipeline(Pipeline),
    /// A packet sent to every port of a multicast group.
    Multicast {
        /// The datapath (NB uuid with `--no-friendly-names`).
        datapath: String,
        /// The group (`_MC_flood`...).
        group: String,
    },
    /// A new packet replacing the traced one: `arp`, `nd_ns`, `nd_na`,
    /// `icmp4`, `icmp6`, `tcp_reset`, `sctp_abort`.
    Generated(String),
    /// Any other transformation (`ct_next(…)`, `ct_lb_mark`, `ct_dnat…`,
    /// `clone`...): the traced packet goes on.
    Other,
}

/// The packets ovn-trace replaces the traced one with.
const GENERATED: [&str; 7] = [
    "arp",
    "nd_ns",
    "nd_na",
    "icmp4",
    "icmp6",
    "tcp_reset",
    "sctp_abort",
];

/// A pipeline section's title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// `true` for `ingress(…)`, `false` for `egress(…)`.
    pub ingress: bool,
    /// The datapath: the NB Logical_Switch/Logical_Router uuid with
    /// `--no-friendly-names` (its name otherwise).
    pub datapath: String,
    /// The logical input port.
    pub inport: String,
    /// The logical output port (egress pipelines).
    pub outport: Option<String>,
}

/// A logical flow table reached, and the actions of the flow that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Nesting level.
    pub depth: usize,
    /// The table number in its pipeline.
    pub table: u32,
    /// The stage name (`ls_out_acl`...), when printed.
    pub name: Option<String>,
    /// The flow's match; `None` when no flow matched (implicit drop).
    pub match_: Option<String>,
    /// The flow's priority.
    pub priority: Option<i64>,
    /// The table line as printed.
    pub line: String,
    /// The actions executed, one per line, as printed.
    pub actions: Vec<String>,
}

impl Stage {
    /// The stage name, or "" when not printed.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// Whether the packet is dropped here: an explicit `drop;`, or no flow
    /// matched.
    pub fn drops(&self) -> bool {
        self.match_.is_none() || self.actions.iter().any(|a| a == "drop;")
    }

    /// Whether a `reject` action answers the packet here.
    pub fn rejects(&self) -> bool {
        self.actions.iter().any(|a| a.starts_with("reject"))
    }

    /// The port the packet is output to here (`/* output to "p", type "t"
    /// */`), with the port's type.
    pub fn output(&self) -> Option<(String, String)> {
        self.actions.iter().find_map(|a| parse_output(a))
    }

    /// An error ovn-trace reported (`*** …`), without the stars.
    pub fn error(&self) -> Option<&str> {
        self.actions
            .iter()
            .find_map(|a| a.strip_prefix("***").map(str::trim))
    }

    /// Whether ovn-trace did not output the packet because it would go back
    /// out of its input port.
    pub fn omits_output(&self) -> bool {
        self.actions
            .iter()
            .any(|a| a.starts_with("/* omitting output"))
    }

    /// Whether this is an ACL table deciding on ACL matches (`ls_in_acl`,
    /// `ls_out_acl`, `ls_in_acl_after_lb`, `ls_*_acl_eval`), not a hint,
    /// pre-ACL or action table.
    pub fn is_acl(&self) -> bool {
        let name = self.name();
        name.contains("_acl")
            && !["hint", "pre_acl", "acl_action", "acl_sample"]
                .iter()
                .any(|x| name.contains(x))
    }
}

/// `/* output to "p", type "t" */` → (`p`, `t`).
fn parse_output(action: &str) -> Option<(String, String)> {
    let rest = action.strip_prefix("/* output to \"")?;
    let (port, rest) = rest.split_once('"')?;
    let kind = rest.strip_prefix(", type \"")?.split_once('"')?.0;
    Some((port.to_string(), kind.to_string()))
}

/// Parses `ovn-trace --detailed` output (any other text yields no items).
pub fn parse(text: &str) -> Trace {
    let lines: Vec<&str> = text.lines().collect();
    let mut trace = Trace::default();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i].trim_end();
        let body = raw.trim_start();
        let depth = (raw.len() - body.len()) / 4;
        i += 1;
        if body.is_empty() {
            continue;
        }
        if trace.items.is_empty()
            && trace.microflow.is_none()
            && let Some(flow) = body.strip_prefix("# ")
        {
            trace.microflow = Some(flow.to_string());
            continue;
        }
        let underlined = lines.get(i).is_some_and(|next| {
            let next = next.trim();
            !next.is_empty() && next.chars().all(|c| c == '-') && next.len() == body.len()
        });
        if underlined {
            i += 1;
            trace.items.push(Item::Section(Section {
                depth,
                title: body.to_string(),
                kind: section_kind(body),
                actions: Vec::new(),
            }));
        } else if let Some(stage) = parse_stage(body, depth) {
            trace.items.push(Item::Stage(stage));
        } else {
            match trace.items.last_mut() {
                Some(Item::Stage(stage)) => stage.actions.push(body.to_string()),
                Some(Item::Section(section)) => section.actions.push(body.to_string()),
                None => {}
            }
        }
    }
    trace
}

fn section_kind(title: &str) -> SectionKind {
    let Some((name, args)) = title.split_once('(') else {
        return if GENERATED.contains(&title) {
            SectionKind::Generated(title.to_string())
        } else {
            SectionKind::Other
        };
    };
    let arg = |key: &str| quoted_arg(args, key);
    match name {
        "ingress" | "egress" => match (arg("dp"), arg("inport")) {
            (Some(datapath), Some(inport)) => SectionKind::Pipeline(Pipeline {
                ingress: name == "ingress",
                datapath,
                inport,
                outport: arg("outport"),
            }),
            _ => SectionKind::Other,
        },
        "multicast" => match (arg("dp"), arg("mcgroup")) {
            (Some(datapath), Some(group)) => SectionKind::Multicast { datapath, group },
            _ => SectionKind::Other,
        },
        _ => SectionKind::Other,
    }
}

/// The value of `key="value"` in a title's arguments.
fn quoted_arg(args: &str, key: &str) -> Option<String> {
    let mut rest = args;
    loop {
        let at = rest.find(&format!("{key}=\""))?;
        let preceded = at == 0 || rest[..at].ends_with(' ') || rest[..at].ends_with('(');
        let value = &rest[at + key.len() + 2..];
        if preceded {
            return value.split_once('"').map(|(v, _)| v.to_string());
        }
        rest = value;
    }
}

/// `N. stage (source): match, priority P, uuid U`, `N. stage: match, …`,
/// `N. (source): match, …`, or `N. [stage: ]no match (implicit drop)`.
fn parse_stage(body: &str, depth: usize) -> Option<Stage> {
    let (number, rest) = body.split_once(". ")?;
    let table: u32 = number.parse().ok()?;
    let stage = |name: Option<&str>, match_: Option<&str>, priority| Stage {
        depth,
        table,
        name: name.filter(|n| !n.is_empty()).map(str::to_string),
        match_: match_.map(str::to_string),
        priority,
        line: body.to_string(),
        actions: Vec::new(),
    };
    if let Some(head) = rest.strip_suffix("no match (implicit drop)") {
        return Some(stage(
            Some(head.trim_end().trim_end_matches(':')),
            None,
            None,
        ));
    }
    let (rest, _uuid) = rest.rsplit_once(", uuid ")?;
    let (rest, priority) = rest.rsplit_once(", priority ")?;
    let priority: i64 = priority.parse().ok()?;
    if let Some(after_source) = rest.strip_prefix('(') {
        let (_, match_) = after_source.split_once("): ")?;
        return Some(stage(None, Some(match_), Some(priority)));
    }
    let (head, match_) = rest.split_once(": ")?;
    let name = head.split_once(" (").map_or(head, |(name, _)| name);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(stage(Some(name), Some(match_), Some(priority)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(trace: &Trace) -> Vec<&Stage> {
        trace
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Stage(s) => Some(s),
                Item::Section(_) => None,
            })
            .collect()
    }

    #[test]
    fn reads_pipelines_tables_and_actions() {
        let trace = parse(include_str!("../../testdata/ovn-trace/pg-drop.txt"));
        assert!(
            trace
                .microflow
                .as_deref()
                .is_some_and(|m| m.starts_with("tcp,reg14=0x2"))
        );
        let pipelines: Vec<&Pipeline> = trace
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Section(Section {
                    kind: SectionKind::Pipeline(p),
                    ..
                }) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(pipelines.len(), 6, "{pipelines:#?}");
        assert_eq!(
            pipelines[0],
            &Pipeline {
                ingress: true,
                datapath: "bb04c5d9-f11a-4a55-ac92-07b003339807".into(),
                inport: "client.ns2".into(),
                outport: None,
            }
        );
        assert_eq!(
            pipelines[5].outport.as_deref(),
            Some("44444444-4444-4444-4444-444444444444")
        );
        let stages = stages(&trace);
        let last = stages.last().unwrap();
        assert_eq!(last.name(), "ls_out_acl");
        assert_eq!(last.table, 4);
        assert_eq!(last.priority, Some(2001));
        assert_eq!(
            last.match_.as_deref(),
            Some("reg0[9] == 1 && (outport == @neutron_pg_drop && ip)")
        );
        assert!(last.drops() && last.is_acl());
        let hint = stages
            .iter()
            .find(|s| s.name() == "ls_out_acl_hint")
            .unwrap();
        assert!(!hint.is_acl() && !hint.drops());
        let patch = stages
            .iter()
            .find_map(|s| s.output())
            .expect("an output to the router");
        assert_eq!(patch, ("rovn-net2-lsp".into(), "patch".into()));
    }

    #[test]
    fn reads_outputs_forks_and_generated_packets() {
        let trace = parse(include_str!("../../testdata/ovn-trace/arp.txt"));
        let generated = trace.items.iter().find_map(|i| match i {
            Item::Section(Section {
                kind: SectionKind::Generated(g),
                actions,
                ..
            }) => Some((g.as_str(), actions.len())),
            _ => None,
        });
        assert_eq!(generated, Some(("arp", 5)));
        let multicast = trace.items.iter().find_map(|i| match i {
            Item::Section(Section {
                kind: SectionKind::Multicast { group, .. },
                depth,
                ..
            }) => Some((group.as_str(), *depth)),
            _ => None,
        });
        assert_eq!(multicast, Some(("_MC_flood_l2", 0)));
        let vm_egress = trace
            .items
            .iter()
            .rev()
            .find_map(|i| match i {
                Item::Section(s) if matches!(s.kind, SectionKind::Pipeline(_)) => Some(s),
                _ => None,
            })
            .unwrap();
        assert_eq!(vm_egress.depth, 1, "the group's ports are nested");

        let delivered = parse(include_str!("../../testdata/ovn-trace/delivered-vm.txt"));
        let out = stages(&delivered)
            .into_iter()
            .filter_map(Stage::output)
            .next_back();
        assert_eq!(
            out,
            Some(("44444444-4444-4444-4444-444444444444".into(), String::new()))
        );
    }

    #[test]
    fn reads_every_form_of_table_line() {
        let implicit = parse_stage("12. lr_in_ip_routing: no match (implicit drop)", 0).unwrap();
        assert_eq!(implicit.name(), "lr_in_ip_routing");
        assert!(implicit.drops() && implicit.match_.is_none());
        let bare = parse_stage("3. no match (implicit drop)", 0).unwrap();
        assert_eq!((bare.table, bare.name.as_deref()), (3, None));
        let no_source = parse_stage(
            "4. ls_out_acl: outport == @pg_x && ip4, priority 2002, uuid 0a0b0c0d",
            0,
        )
        .unwrap();
        assert_eq!(no_source.match_.as_deref(), Some("outport == @pg_x && ip4"));
        let source_only = parse_stage(
            "4. (northd.c:1): (a, b) == (1, 2), priority 5, uuid 01020304",
            0,
        )
        .unwrap();
        assert_eq!(source_only.name, None);
        assert_eq!(source_only.match_.as_deref(), Some("(a, b) == (1, 2)"));
        assert_eq!(parse_stage("reg0[15] = check_in_port_sec();", 0), None);
        assert_eq!(parse_stage("1. something else", 0), None);
        assert_eq!(
            quoted_arg(r#"dp="a", inport="b", outport="c""#, "port"),
            None,
            "`port` is no key of these arguments"
        );
    }

    #[test]
    fn unparsable_text_has_no_items() {
        let trace = parse("ovn-trace: unix:/nope: connection failed\n");
        assert!(trace.items.is_empty() && trace.microflow.is_none());
    }
}
