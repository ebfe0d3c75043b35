//! Reading an instance's metrics back from its Prometheus registry.

/// The series of the metric `name` that belong to application `app`. The runtime's metric
/// families are shared by every instance in a process, so a test reads its own application's.
pub fn app_series(registry: &prometheus::Registry, name: &str, app: &str) -> Vec<prometheus::proto::Metric> {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "application_id" && l.value() == app))
        .cloned()
        .collect()
}

/// The value of the gauge `name` of application `app` in the series with `label` = its value.
pub fn gauge(registry: &prometheus::Registry, name: &str, app: &str, (label, value): (&str, &str)) -> Option<f64> {
    app_series(registry, name, app)
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.name() == label && l.value() == value))
        .map(|m| m.get_gauge().value())
}
