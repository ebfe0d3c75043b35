//! The one way this codebase declares a metric. A component keeps its families in one file (its
//! `internal_events.rs`, or the one module that counts them), built once per process (a static)
//! from their definitions with [`family`] and registered with [`register`] or
//! [`register_default`]; only that file updates them, its events in their `emit()`. Being process-wide, a family registered twice is the same
//! collector, never one that no registry exposes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::Registry;

/// A family from its fixed definition (name, help, labels, buckets). A bad definition, or a
/// name defined twice with other labels (which a registry would take for the same family and
/// never expose), is a bug every test of the component hits, not something input can cause.
pub fn family<C: Collector>(definition: prometheus::Result<C>) -> C {
    static DEFINED: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());
    let family = definition.unwrap_or_else(|error| panic!("a metric definition is invalid: {error}"));
    let mut defined = DEFINED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for desc in family.desc() {
        let labels = defined.entry(desc.fq_name.clone()).or_insert_with(|| desc.variable_labels.clone());
        assert!(
            *labels == desc.variable_labels,
            "metric {} is defined twice: with labels {labels:?} and {:?}",
            desc.fq_name,
            desc.variable_labels
        );
    }
    family
}

/// Registers `families` in `registry`; one already there (this process's own) is fine. Any
/// other refusal, such as a name the registry has with other labels, is returned.
pub fn register(registry: &Registry, families: impl IntoIterator<Item = Box<dyn Collector>>) -> prometheus::Result<()> {
    for collector in families {
        match registry.register(collector) {
            Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// [`register`] in the default registry, which the pipeline's `/metrics` serves. A refusal is
/// logged: the families still count, they are only not exposed.
pub fn register_default(component: &str, families: impl IntoIterator<Item = Box<dyn Collector>>) {
    if let Err(error) = register(prometheus::default_registry(), families) {
        tracing::warn!(component, %error, "metrics not registered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    #[test]
    fn a_family_registered_again_is_the_same_collector() {
        let registry = Registry::new();
        let checks = family(IntCounterVec::new(Opts::new("metrics_test_total", "test"), &["outcome"]));
        register(&registry, [Box::new(checks.clone()) as Box<dyn Collector>]).unwrap();
        register(&registry, [Box::new(checks.clone()) as Box<dyn Collector>]).unwrap();
        checks.with_label_values(&["hit"]).inc();
        assert_eq!(registry.gather()[0].get_metric()[0].get_counter().value(), 1.0);
    }

    #[test]
    #[should_panic(expected = "defined twice")]
    fn a_name_defined_again_with_other_labels_is_refused() {
        family(IntCounterVec::new(Opts::new("metrics_clash_total", "test"), &["outcome"]));
        family(IntCounterVec::new(Opts::new("metrics_clash_total", "test"), &["kind"]));
    }
}
