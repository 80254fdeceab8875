//! A decision on a possible adverse event: a report holding the four minimum
//! criteria of a valid individual case safety report (an identifiable patient,
//! an identifiable reporter, a suspect product, an adverse event) and its
//! seriousness, or "not an adverse event" with the reason. Day zero is always
//! the flag's first receipt, never a time a person typed.

use chrono::{DateTime, NaiveDate, Utc};
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::input::{self, InputError};
use touchpoint_proto::v1::{AdverseEventReport, AdverseEventReported, ReportAdverseEventRequest};

/// What a reporter may be (E2B(R3) C.2.r.4).
pub const QUALIFICATIONS: [&str; 5] = [
    "physician",
    "pharmacist",
    "other_health_professional",
    "lawyer",
    "consumer",
];

/// What makes an event serious (E2B(R3) E.i.3.2).
pub const SERIOUSNESS: [&str; 6] = [
    "death",
    "life_threatening",
    "hospitalisation",
    "disabling",
    "congenital_anomaly",
    "other_medically_important",
];

/// The decision `AdverseEventReported.decision` names.
pub const REPORTED: &str = "reported";
/// See [`REPORTED`].
pub const NOT_ADVERSE_EVENT: &str = "not_adverse_event";

/// The longest event description.
const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// The oldest a patient can be said to be.
const MAX_AGE_YEARS: u32 = 150;

/// The flag a decision is about, as the case's timeline holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Its review task (empty for a flag without one).
    pub review_task_id: String,
    /// The message that raised it.
    pub inbound_id: String,
    /// Day zero.
    pub received_at: DateTime<Utc>,
}

/// What was decided, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Reported to the safety database.
    Reported {
        /// What the form held, trimmed.
        report: Box<AdverseEventReport>,
        /// The safety database's reference ("" when it gave none).
        safety_reference: String,
    },
    /// Not an adverse event.
    NotAdverseEvent {
        /// Why.
        reason: String,
    },
}

/// The decision `request` asks to record, on `today` (no date may be later).
pub fn decision(
    request: &ReportAdverseEventRequest,
    today: NaiveDate,
) -> Result<Decision, InputError> {
    if request.not_adverse_event {
        return Ok(Decision::NotAdverseEvent {
            reason: input::note("reason", &request.reason)?,
        });
    }
    let raw = request
        .report
        .as_ref()
        .ok_or_else(|| InputError::new("report", "is required unless not_adverse_event"))?;
    Ok(Decision::Reported {
        report: Box::new(report(raw, today)?),
        safety_reference: input::text("safety_reference", &request.safety_reference, false)?,
    })
}

/// `raw` checked for the four minimum criteria and a consistent seriousness.
fn report(raw: &AdverseEventReport, today: NaiveDate) -> Result<AdverseEventReport, InputError> {
    let initials = input::text("report.patient_initials", &raw.patient_initials, false)?;
    if initials.chars().count() > 10
        || !initials
            .chars()
            .all(|c| c.is_alphabetic() || matches!(c, '.' | ' ' | '-'))
    {
        return Err(InputError::new(
            "report.patient_initials",
            "must be at most 10 letters",
        ));
    }
    let sex = match raw.patient_sex.trim() {
        "" => "",
        "female" => "female",
        "male" => "male",
        _ => {
            return Err(InputError::new(
                "report.patient_sex",
                "must be female, male or empty",
            ));
        }
    };
    if raw.patient_age_years > MAX_AGE_YEARS {
        return Err(InputError::new(
            "report.patient_age_years",
            format!("must be at most {MAX_AGE_YEARS}"),
        ));
    }
    let birth_date = date("report.patient_birth_date", &raw.patient_birth_date, today)?;
    if initials.is_empty() && sex.is_empty() && raw.patient_age_years == 0 && birth_date.is_empty()
    {
        return Err(InputError::new(
            "report.patient",
            "an identifiable patient needs initials, sex, age or birth date",
        ));
    }
    let reporter_name = input::text("report.reporter_name", &raw.reporter_name, true)?;
    let qualification = raw.reporter_qualification.trim();
    if !QUALIFICATIONS.contains(&qualification) {
        return Err(InputError::new(
            "report.reporter_qualification",
            format!("must be one of {}", QUALIFICATIONS.join(", ")),
        ));
    }
    let suspect_product = input::text("report.suspect_product", &raw.suspect_product, true)?;
    let description = input::note("report.event_description", &raw.event_description)?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(InputError::new(
            "report.event_description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    let onset = date("report.event_onset_date", &raw.event_onset_date, today)?;
    let mut criteria: Vec<String> = Vec::new();
    for criterion in &raw.seriousness_criteria {
        let criterion = criterion.trim();
        if !SERIOUSNESS.contains(&criterion) {
            return Err(InputError::new(
                "report.seriousness_criteria",
                format!("must be of {}", SERIOUSNESS.join(", ")),
            ));
        }
        if !criteria.iter().any(|c| c == criterion) {
            criteria.push(criterion.to_owned());
        }
    }
    if raw.serious == criteria.is_empty() {
        return Err(InputError::new(
            "report.serious",
            "a serious event names at least one criterion, and only a serious one does",
        ));
    }
    Ok(AdverseEventReport {
        patient_initials: initials,
        patient_sex: sex.to_owned(),
        patient_age_years: raw.patient_age_years,
        patient_birth_date: birth_date,
        reporter_name,
        reporter_qualification: qualification.to_owned(),
        suspect_product,
        event_description: description,
        event_onset_date: onset,
        serious: raw.serious,
        seriousness_criteria: criteria,
    })
}

/// `raw` as `YYYY-MM-DD` no later than `today`, or "".
fn date(field: &str, raw: &str, today: NaiveDate) -> Result<String, InputError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) if day <= today => Ok(day.format("%Y-%m-%d").to_string()),
        Ok(_) => Err(InputError::new(field, "must not be in the future")),
        Err(_) => Err(InputError::new(field, "must be a date, YYYY-MM-DD")),
    }
}

/// The event recording `decision` on `flag`, made by `by`.
pub fn reported(flag: &Flag, decision: Decision, by: &str) -> AdverseEventReported {
    let base = AdverseEventReported {
        review_task_id: flag.review_task_id.clone(),
        inbound_id: flag.inbound_id.clone(),
        aware_at: Some(timestamp(flag.received_at)),
        decided_by: by.to_owned(),
        ..AdverseEventReported::default()
    };
    match decision {
        Decision::Reported {
            report,
            safety_reference,
        } => AdverseEventReported {
            decision: REPORTED.into(),
            report: Some(*report),
            safety_reference,
            ..base
        },
        Decision::NotAdverseEvent { reason } => AdverseEventReported {
            decision: NOT_ADVERSE_EVENT.into(),
            reason,
            ..base
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default()
    }

    fn form() -> AdverseEventReport {
        AdverseEventReport {
            patient_initials: "J.D.".into(),
            reporter_name: "Jane Doe".into(),
            reporter_qualification: "consumer".into(),
            suspect_product: "Examplimab".into(),
            event_description: "Rash on both arms since the second dose".into(),
            ..AdverseEventReport::default()
        }
    }

    fn request(report: AdverseEventReport) -> ReportAdverseEventRequest {
        ReportAdverseEventRequest {
            report: Some(report),
            ..ReportAdverseEventRequest::default()
        }
    }

    fn refused(report: AdverseEventReport) -> String {
        decision(&request(report), today())
            .err()
            .map(|e| e.field)
            .unwrap_or_default()
    }

    #[test]
    fn a_report_needs_each_of_the_four_minimum_criteria() {
        assert!(decision(&request(form()), today()).is_ok());
        let no_patient = AdverseEventReport {
            patient_initials: String::new(),
            ..form()
        };
        assert_eq!(refused(no_patient.clone()), "report.patient");
        // Any one identifier will do.
        let by_age = AdverseEventReport {
            patient_age_years: 54,
            ..no_patient
        };
        assert!(decision(&request(by_age), today()).is_ok());
        let no_reporter = AdverseEventReport {
            reporter_name: " ".into(),
            ..form()
        };
        assert_eq!(refused(no_reporter), "report.reporter_name");
        let unknown_kind = AdverseEventReport {
            reporter_qualification: "neighbour".into(),
            ..form()
        };
        assert_eq!(refused(unknown_kind), "report.reporter_qualification");
        let no_product = AdverseEventReport {
            suspect_product: String::new(),
            ..form()
        };
        assert_eq!(refused(no_product), "report.suspect_product");
        let no_event = AdverseEventReport {
            event_description: String::new(),
            ..form()
        };
        assert_eq!(refused(no_event), "report.event_description");
    }

    #[test]
    fn seriousness_and_its_criteria_agree_and_dates_are_not_in_the_future() {
        let serious_without = AdverseEventReport {
            serious: true,
            ..form()
        };
        assert_eq!(refused(serious_without), "report.serious");
        let criteria_without = AdverseEventReport {
            seriousness_criteria: vec!["hospitalisation".into()],
            ..form()
        };
        assert_eq!(refused(criteria_without), "report.serious");
        let serious = AdverseEventReport {
            serious: true,
            seriousness_criteria: vec!["hospitalisation".into(), "hospitalisation".into()],
            ..form()
        };
        match decision(&request(serious), today()) {
            Ok(Decision::Reported { report, .. }) => {
                assert_eq!(report.seriousness_criteria, vec!["hospitalisation"]);
            }
            other => panic!("{other:?}"),
        }
        let tomorrow = AdverseEventReport {
            event_onset_date: "2026-12-08".into(),
            ..form()
        };
        assert_eq!(refused(tomorrow), "report.event_onset_date");
        let not_a_date = AdverseEventReport {
            patient_birth_date: "07/12/1970".into(),
            ..form()
        };
        assert_eq!(refused(not_a_date), "report.patient_birth_date");
    }

    #[test]
    fn not_an_adverse_event_needs_a_reason_and_day_zero_is_the_flags() {
        let bare = ReportAdverseEventRequest {
            not_adverse_event: true,
            ..ReportAdverseEventRequest::default()
        };
        assert_eq!(
            decision(&bare, today()).err().map(|e| e.field),
            Some("reason".into())
        );
        let with_reason = ReportAdverseEventRequest {
            reason: "The patient described a planned dose change".into(),
            ..bare
        };
        let flag = Flag {
            review_task_id: "task-1".into(),
            inbound_id: "in-1".into(),
            received_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
        };
        let decided = decision(&with_reason, today()).unwrap_or_else(|e| panic!("{e}"));
        let event = reported(&flag, decided, "paula");
        assert_eq!(event.decision, NOT_ADVERSE_EVENT);
        assert_eq!(event.aware_at.map(|t| t.seconds), Some(1_700_000_000));
        assert_eq!(event.decided_by, "paula");
        assert!(event.report.is_none());
    }
}
