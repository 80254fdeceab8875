//! The program file as written, before validation. Loose on purpose: every field
//! that can be wrong in meaning is read as text, so validation can list every
//! problem at once instead of stopping at the first.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub id: String,
    pub name: String,
    pub languages: Vec<String>,
    #[serde(default)]
    pub contact_window: RawWindow,
    pub frequency_cap: Option<RawCap>,
    #[serde(default)]
    pub exemption: Option<String>,
    #[serde(default)]
    pub steps: Vec<RawStep>,
    #[serde(default)]
    pub targets: Option<RawTargets>,
    #[serde(default)]
    pub published_by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets {
    pub contact_rate: Option<f64>,
    pub first_contact_hours: Option<f64>,
    pub callbacks_within_sla: Option<f64>,
    pub ae_reviewed_within_24h: Option<f64>,
    pub backlog_hours: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub start: Option<String>,
    pub end: Option<String>,
    #[serde(default)]
    pub no_contact_days: Vec<String>,
    #[serde(default)]
    pub no_contact_dates: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCap {
    pub per_day: i64,
    pub per_week: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub id: String,
    pub anchor: String,
    #[serde(default)]
    pub offset: Option<String>,
    pub template: String,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub channels: Vec<RawChannel>,
    #[serde(default)]
    pub exit_when: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub channel: String,
    #[serde(default)]
    pub attempts: Option<i64>,
    #[serde(default)]
    pub wait: Option<String>,
}
