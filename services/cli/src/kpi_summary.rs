//! The KPIs over a range of days, from the projection's daily figures
//! (`GetKpis`): sums over the range, and the rates and means of those sums.
//! What `touchpoint kpi` prints and `touchpoint kpi --export` pushes. Pure.

use std::collections::BTreeMap;

use touchpoint_proto::v1::GetKpisResponse;

/// A count and the seconds summed over it: a mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mean {
    /// How many.
    pub count: i64,
    /// Their seconds, summed.
    pub seconds: i64,
}

impl Mean {
    /// The mean in hours; `None` when there is nothing to average.
    pub fn hours(self) -> Option<f64> {
        (self.count > 0).then(|| self.seconds as f64 / self.count as f64 / 3600.0)
    }
}

/// The KPIs over the days a `GetKpis` answer covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The first and last day, and their zone.
    pub from: String,
    /// See `from`.
    pub to: String,
    /// See `from`.
    pub time_zone: String,
    /// Cases enrolled.
    pub enrolled: i64,
    /// Attempts made, by channel.
    pub attempted: BTreeMap<String, i64>,
    /// Of those, answered, by channel.
    pub reached: BTreeMap<String, i64>,
    /// From a case's enrolment to its first send.
    pub first_send: Mean,
    /// From a case's enrolment to its first answered contact.
    pub first_contact: Mean,
    /// Suppressions by reason.
    pub suppressed: BTreeMap<String, i64>,
    /// Touchpoints expired before they could be made.
    pub expired: i64,
    /// Cases that opted out.
    pub opted_out: i64,
    /// Inbound contacts.
    pub inbound: i64,
    /// From an inbound contact to a person's answer.
    pub first_response: Mean,
    /// Callbacks promised, done, and done within their SLA.
    pub callbacks: i64,
    /// See `callbacks`.
    pub callbacks_done: i64,
    /// See `callbacks`.
    pub callbacks_in_sla: i64,
    /// Possible adverse events flagged, reviewed, and reviewed within 24 h.
    pub ae_flags: i64,
    /// See `ae_flags`.
    pub ae_reviewed: i64,
    /// See `ae_flags`.
    pub ae_reviewed_in_24h: i64,
    /// Flags reported to the safety database within 24 hours of day zero.
    pub ae_reported_in_24h: i64,
    /// Touchpoints due and not attempted now, by age.
    pub backlog: BTreeMap<String, u64>,
    /// Work open now, by kind: (open, past due).
    pub open: BTreeMap<String, (u64, u64)>,
    /// Timeline entries the projection has yet to fold.
    pub behind: u64,
}

impl Summary {
    /// Sums `answer`'s figures over its days and programs.
    pub fn of(answer: &GetKpisResponse) -> Self {
        let mut s = Summary {
            from: answer.from_day.clone(),
            to: answer.to_day.clone(),
            time_zone: answer.time_zone.clone(),
            behind: answer.behind,
            ..Summary::default()
        };
        for f in &answer.figures {
            let by_channel = |map: &mut BTreeMap<String, i64>| {
                *map.entry(f.channel.clone()).or_default() += f.value;
            };
            match f.figure.as_str() {
                "enrolled" => s.enrolled += f.value,
                "attempted" => by_channel(&mut s.attempted),
                "reached" => by_channel(&mut s.reached),
                "first_send" => s.first_send.count += f.value,
                "first_send_seconds" => s.first_send.seconds += f.value,
                "first_contact" => s.first_contact.count += f.value,
                "first_contact_seconds" => s.first_contact.seconds += f.value,
                "expired" => s.expired += f.value,
                "opted_out" => s.opted_out += f.value,
                "inbound" => s.inbound += f.value,
                "responded" => s.first_response.count += f.value,
                "response_seconds" => s.first_response.seconds += f.value,
                "callbacks" => s.callbacks += f.value,
                "callbacks_done" => s.callbacks_done += f.value,
                "callbacks_in_sla" => s.callbacks_in_sla += f.value,
                "ae_flags" => s.ae_flags += f.value,
                "ae_reviewed" => s.ae_reviewed += f.value,
                "ae_reviewed_in_24h" => s.ae_reviewed_in_24h += f.value,
                "ae_reported_in_24h" => s.ae_reported_in_24h += f.value,
                other => {
                    if let Some(reason) = other.strip_prefix("suppressed:") {
                        *s.suppressed.entry(reason.to_owned()).or_default() += f.value;
                    }
                }
            }
        }
        for b in &answer.backlog {
            *s.backlog.entry(b.age.clone()).or_default() += b.count;
        }
        for w in &answer.open_work {
            let entry = s.open.entry(w.kind.clone()).or_default();
            entry.0 += w.open;
            entry.1 += w.overdue;
        }
        s
    }

    /// Attempts over every channel.
    pub fn attempted_total(&self) -> i64 {
        self.attempted.values().sum()
    }

    /// Per channel: answered, made, and their ratio.
    pub fn contact_rates(&self) -> Vec<(&str, i64, i64, f64)> {
        self.attempted
            .iter()
            .map(|(channel, made)| {
                let reached = self.reached.get(channel).copied().unwrap_or(0);
                (channel.as_str(), reached, *made, ratio(reached, *made))
            })
            .collect()
    }

    /// Work of `kind` open now, and past due.
    pub fn open_of(&self, kind: &str) -> (u64, u64) {
        self.open.get(kind).copied().unwrap_or_default()
    }

    /// The table's rows: name and value.
    pub fn rows(&self) -> Vec<(String, String)> {
        let hours = |mean: Mean| {
            mean.hours().map_or_else(
                || "none yet".to_owned(),
                |h| format!("{:.1} h (mean of {})", h, mean.count),
            )
        };
        let share = |part: i64, whole: i64| {
            format!("{:.0}% ({part} of {whole})", 100.0 * ratio(part, whole))
        };
        let mut rows = vec![
            (
                "days".to_owned(),
                format!("{} to {} ({})", self.from, self.to, self.time_zone),
            ),
            ("cases enrolled".to_owned(), self.enrolled.to_string()),
            (
                "attempts per case enrolled".to_owned(),
                format!("{:.1}", ratio(self.attempted_total(), self.enrolled)),
            ),
        ];
        for (channel, reached, made, _) in self.contact_rates() {
            rows.push((format!("contact rate, {channel}"), share(reached, made)));
        }
        rows.push(("time to first contact".into(), hours(self.first_contact)));
        rows.push(("time to first send".into(), hours(self.first_send)));
        let backlog: u64 = self.backlog.values().sum();
        let by_age: Vec<String> = self
            .backlog
            .iter()
            .map(|(age, n)| format!("{n} {}", age.replace('_', " ")))
            .collect();
        rows.push((
            "backlog (due, not attempted)".into(),
            if by_age.is_empty() {
                "0".to_owned()
            } else {
                format!("{backlog}: {}", by_age.join(", "))
            },
        ));
        for (reason, n) in &self.suppressed {
            rows.push((
                format!("suppressed, {}", reason.replace('_', " ")),
                n.to_string(),
            ));
        }
        rows.push(("expired".into(), self.expired.to_string()));
        rows.push(("opt-out rate".into(), share(self.opted_out, self.enrolled)));
        rows.push(("inbound contacts".into(), self.inbound.to_string()));
        rows.push(("time to first response".into(), hours(self.first_response)));
        rows.push(("callbacks promised".into(), self.callbacks.to_string()));
        rows.push((
            "callbacks done within SLA".into(),
            share(self.callbacks_in_sla, self.callbacks_done),
        ));
        let (open, overdue) = self.open_of("callback");
        rows.push((
            "callbacks open (past due)".into(),
            format!("{open} ({overdue})"),
        ));
        rows.push(("AE flags raised".into(), self.ae_flags.to_string()));
        rows.push((
            "AE flags reviewed within 24 h".into(),
            share(self.ae_reviewed_in_24h, self.ae_flags),
        ));
        rows.push((
            "AE flags reported within 24 h".into(),
            share(self.ae_reported_in_24h, self.ae_flags),
        ));
        let (open, overdue) = self.open_of("adverse_event");
        rows.push((
            "AE flags open (past 24 h)".into(),
            format!("{open} ({overdue})"),
        ));
        if self.behind > 0 {
            rows.push((
                "not yet counted".into(),
                format!("{} timeline entries", self.behind),
            ));
        }
        rows
    }
}

/// `part / whole`, 0 when there is no whole.
pub fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use touchpoint_proto::v1::{BacklogBucket, KpiFigure, OpenWork};

    use super::*;

    fn figure(day: &str, channel: &str, name: &str, value: i64) -> KpiFigure {
        KpiFigure {
            program_id: "adherence".into(),
            day: day.into(),
            channel: channel.into(),
            figure: name.into(),
            value,
        }
    }

    #[test]
    fn days_sum_into_rates_and_means() {
        let answer = GetKpisResponse {
            figures: vec![
                figure("2027-01-04", "", "enrolled", 4),
                figure("2027-01-05", "sms", "attempted", 3),
                figure("2027-01-06", "sms", "attempted", 1),
                figure("2027-01-05", "sms", "reached", 1),
                figure("2027-01-06", "", "first_contact", 2),
                figure("2027-01-06", "", "first_contact_seconds", 3 * 3600),
                figure("2027-01-05", "email", "suppressed:no_consent", 2),
                figure("2027-01-06", "", "opted_out", 1),
            ],
            backlog: vec![BacklogBucket {
                program_id: "adherence".into(),
                channel: "sms".into(),
                age: "over_24h".into(),
                count: 2,
            }],
            open_work: vec![OpenWork {
                program_id: "adherence".into(),
                kind: "adverse_event".into(),
                open: 1,
                overdue: 1,
                due_soon: 0,
            }],
            ..GetKpisResponse::default()
        };
        let s = Summary::of(&answer);
        assert_eq!(s.contact_rates(), vec![("sms", 1, 4, 0.25)]);
        assert_eq!(s.first_contact.hours(), Some(1.5));
        assert_eq!(s.first_send.hours(), None, "nothing to average: no figure");
        assert_eq!(s.open_of("adverse_event"), (1, 1));
        let rows: BTreeMap<String, String> = s.rows().into_iter().collect();
        assert_eq!(rows["opt-out rate"], "25% (1 of 4)");
        assert_eq!(rows["backlog (due, not attempted)"], "2: 2 over 24h");
        assert_eq!(rows["suppressed, no consent"], "2");
        assert_eq!(rows["time to first send"], "none yet");
    }
}
