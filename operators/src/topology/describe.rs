//! Renders a topology like Kafka Streams' `TopologyDescription`.

use std::fmt::Write;

use super::{CompiledRole, Topology};

pub(super) fn describe(topology: &Topology) -> String {
    let mut out = String::from("Topologies:\n");
    for (index, sub) in topology.subtopologies.iter().enumerate() {
        let _ = writeln!(out, "   Sub-topology: {index}");
        for &id in &sub.nodes {
            let (Some(node), Some(meta)) = (topology.nodes.get(id), topology.meta.get(id)) else {
                continue;
            };
            let stores: Vec<&str> = meta
                .stores
                .iter()
                .chain(&meta.timer_store)
                .filter_map(|&s| topology.stores.get(s))
                .map(|s| s.name.as_str())
                .collect();
            let _ = match &node.role {
                CompiledRole::Source { topic, .. } => writeln!(out, "    Source: {} (topics: [{topic}])", node.name),
                CompiledRole::Processor => {
                    writeln!(out, "    Processor: {} (stores: [{}])", node.name, stores.join(", "))
                }
                CompiledRole::Sink { topic, .. } => writeln!(out, "    Sink: {} (topic: {topic})", node.name),
            };
            let names = |ids: &[usize]| -> String {
                let names: Vec<&str> =
                    ids.iter().filter_map(|&i| topology.nodes.get(i)).map(|n| n.name.as_str()).collect();
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            };
            if !matches!(node.role, CompiledRole::Sink { .. }) {
                let _ = writeln!(out, "      --> {}", names(&meta.children));
            }
            if !node.parents.is_empty() {
                let _ = writeln!(out, "      <-- {}", names(&node.parents));
            }
        }
        out.push('\n');
    }
    out
}
