//! Status conditions as Kubernetes API conventions describe them: one
//! entry per type (`Ready`, `Reconciling`, `Warning`), `True`/`False`, a
//! CamelCase reason, a human message, and a transition time that changes
//! only when the status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const WARNING: &str = "Warning";

/// Sets condition `type_` in `conditions`, keeping its transition time when
/// the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        last_transition_time,
        observed_generation: generation,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Sets condition `type_` to `False` with reason `None` (nothing to report).
pub fn clear(conditions: &mut Vec<Condition>, type_: &str, generation: Option<i64>) {
    set(conditions, type_, false, "None", "", generation);
}

/// The condition of `type_`, if any.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_with_the_status() {
        let mut conditions = Vec::new();
        set(&mut conditions, READY, false, "Creating", "first", Some(1));
        let first = get(&conditions, READY)
            .unwrap()
            .last_transition_time
            .clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        set(&mut conditions, READY, false, "Waiting", "second", Some(2));
        let same = get(&conditions, READY).unwrap();
        assert_eq!(same.last_transition_time, first);
        assert_eq!(
            (same.reason.as_str(), same.observed_generation),
            ("Waiting", Some(2))
        );
        set(&mut conditions, READY, true, "Ready", "up", Some(2));
        assert_ne!(get(&conditions, READY).unwrap().last_transition_time, first);
        assert!(is_true(&conditions, READY));
        assert_eq!(conditions.len(), 1);
    }
}
