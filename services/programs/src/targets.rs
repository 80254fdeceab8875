//! What a site leader holds a program to: the `[targets]` of its file. Each is
//! optional; the operations page marks a figure that misses its target, and a
//! backlog older than `backlog_hours` is an SLA alert.

use crate::raw::RawTargets;
use crate::validate::Errors;

/// A program's targets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Targets {
    /// Least share of attempts answered, 0 to 1.
    pub contact_rate: Option<f64>,
    /// Most mean hours from enrolment to first contact.
    pub first_contact_hours: Option<f64>,
    /// Least share of callbacks done by their due time, 0 to 1.
    pub callbacks_within_sla: Option<f64>,
    /// Least share of adverse-event flags reviewed within 24 hours, 0 to 1.
    pub ae_reviewed_within_24h: Option<f64>,
    /// Most hours a touchpoint may stay due and not attempted.
    pub backlog_hours: Option<f64>,
}

/// Hours in a year: the longest an hours target may be.
const YEAR_HOURS: f64 = 8760.0;

pub(crate) fn check(raw: Option<&RawTargets>, errors: &mut Errors<'_>) -> Option<Targets> {
    let Some(raw) = raw else {
        return Some(Targets::default());
    };
    let mut ok = true;
    let mut share = |value: Option<f64>, field: &str| {
        if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            errors.add(None, field, "must be a share from 0 to 1, e.g. 0.35");
            ok = false;
        }
        value
    };
    let contact_rate = share(raw.contact_rate, "targets.contact_rate");
    let callbacks_within_sla = share(raw.callbacks_within_sla, "targets.callbacks_within_sla");
    let ae_reviewed_within_24h =
        share(raw.ae_reviewed_within_24h, "targets.ae_reviewed_within_24h");
    let mut hours = |value: Option<f64>, field: &str| {
        if value.is_some_and(|v| !(v > 0.0 && v <= YEAR_HOURS)) {
            errors.add(None, field, "must be hours above 0 and at most 8760");
            ok = false;
        }
        value
    };
    let first_contact_hours = hours(raw.first_contact_hours, "targets.first_contact_hours");
    let backlog_hours = hours(raw.backlog_hours, "targets.backlog_hours");
    ok.then_some(Targets {
        contact_rate,
        first_contact_hours,
        callbacks_within_sla,
        ae_reviewed_within_24h,
        backlog_hours,
    })
}
