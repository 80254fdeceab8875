//! A reported adverse event as an ICH E2B(R3)-shaped individual case safety
//! report: the HL7 v3 message (`MCCI_IN200100UV01` holding one
//! `PORR_IN049016UV`) with the fields the pharmacovigilance form holds, for the
//! manufacturer's safety database to import. Pure: a decision in, XML out.
//!
//! What it carries, by E2B(R3) data element:
//! - C.1.1 the sender's safety report id (the flag's id), C.1.2 the date of
//!   creation, C.1.3 type "report from study" with C.5.4 "other studies"
//!   (patient support programs collect solicited reports), C.1.4 the date the
//!   report was first received (day zero) and C.1.5 the most recent;
//! - C.2.r the primary source: the reporter's name and qualification;
//! - D.1 the patient's initials, D.2.2 age, D.2.1 birth date, D.5 sex;
//! - E.i the reaction as reported, its onset and its seriousness criteria;
//! - G.k the suspect product, characterised as suspect;
//! - H.1 the narrative (the event in the reporter's words);
//! - the safety database's reference as a further case identifier.
//!
//! Coded terms (MedDRA, product dictionaries) are left to the safety
//! database: the hub hands off what the reporter said.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use touchpoint_proto::v1::{AdverseEventReport, AdverseEventReported};

use touchpoint_platform::xml::escape;

/// The ICH code lists and identifier roots the message uses.
mod oid {
    /// Message and batch numbers.
    pub const MESSAGE_ID: &str = "2.16.840.1.113883.3.989.2.1.3.1";
    /// The sender's safety report identifier (C.1.1).
    pub const REPORT_ID: &str = "2.16.840.1.113883.3.989.2.1.3.2";
    /// Other case identifiers (C.1.9.1.r.2).
    pub const OTHER_CASE_ID: &str = "2.16.840.1.113883.3.989.2.1.3.3";
    /// Type of report (C.1.3).
    pub const REPORT_TYPE: &str = "2.16.840.1.113883.3.989.2.1.1.2";
    /// Study type (C.5.4).
    pub const STUDY_TYPE: &str = "2.16.840.1.113883.3.989.2.1.1.8";
    /// Qualification of the reporter (C.2.r.4).
    pub const QUALIFICATION: &str = "2.16.840.1.113883.3.989.2.1.1.6";
    /// The ICH observation codes (seriousness criteria, reaction, ...).
    pub const OBSERVATION: &str = "2.16.840.1.113883.3.989.2.1.1.19";
    /// Characterisation of the drug's role (G.k.1).
    pub const DRUG_ROLE: &str = "2.16.840.1.113883.3.989.2.1.1.13";
    /// HL7 administrative gender.
    pub const GENDER: &str = "1.0.5218";
}

/// What the document is made from.
#[derive(Debug, Clone, Copy)]
pub struct Icsr<'a> {
    /// The case.
    pub case_id: &'a str,
    /// Its program (named as the study).
    pub program_id: &'a str,
    /// The decision, with its report.
    pub decided: &'a AdverseEventReported,
    /// When the decision was recorded.
    pub decided_at: DateTime<Utc>,
    /// A unique id for this message.
    pub message_id: &'a str,
    /// When the document is made.
    pub now: DateTime<Utc>,
}

/// The document, or `None` when the decision holds no report (not an adverse
/// event).
pub fn document(icsr: &Icsr<'_>) -> Option<String> {
    let report = icsr.decided.report.as_ref()?;
    let mut x = String::with_capacity(4096);
    let report_id = format!("TOUCHPOINT-{}-{}", icsr.case_id, icsr.decided.flag_key());
    let aware = icsr
        .decided
        .aware_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
        .unwrap_or(icsr.decided_at);
    let created = hl7_time(icsr.now);
    let _ = write!(
        x,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MCCI_IN200100UV01 xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ITSVersion="XML_1.0">
<id extension="{message}-batch" root="{msg_oid}"/>
<creationTime value="{created}"/>
<PORR_IN049016UV>
<id extension="{message}" root="{msg_oid}"/>
<creationTime value="{created}"/>
<interactionId extension="PORR_IN049016UV" root="2.16.840.1.113883.1.6"/>
<controlActProcess classCode="CACT" moodCode="EVN">
<code code="PORR_TE049016UV" codeSystem="2.16.840.1.113883.1.18"/>
<subject typeCode="SUBJ">
<investigationEvent classCode="INVSTG" moodCode="EVN">
<id extension="{report_id}" root="{report_oid}"/>
<id extension="{case}" root="{other_oid}"/>
"#,
        message = escape(icsr.message_id),
        msg_oid = oid::MESSAGE_ID,
        report_id = escape(&report_id),
        report_oid = oid::REPORT_ID,
        case = escape(icsr.case_id),
        other_oid = oid::OTHER_CASE_ID,
    );
    if !icsr.decided.safety_reference.is_empty() {
        let _ = writeln!(
            x,
            r#"<id extension="{}" root="{}"/>"#,
            escape(&icsr.decided.safety_reference),
            oid::OTHER_CASE_ID
        );
    }
    let _ = write!(
        x,
        r#"<code code="PAT_ADV_EVNT" codeSystem="2.16.840.1.113883.5.4"/>
<text>{narrative}</text>
<statusCode code="active"/>
<effectiveTime><low value="{aware}"/></effectiveTime>
<availabilityTime value="{latest}"/>
"#,
        narrative = escape(&report.event_description),
        aware = hl7_time(aware),
        latest = hl7_time(icsr.decided_at),
    );
    component(&mut x, report);
    primary_source(&mut x, report, &created);
    let _ = write!(
        x,
        r#"<subjectOf2 typeCode="SUBJ">
<investigationCharacteristic classCode="OBS" moodCode="EVN">
<code code="1" codeSystem="2.16.840.1.113883.3.989.2.1.1.23"/>
<value xsi:type="CE" code="2" codeSystem="{report_type}" displayName="Report from study"/>
</investigationCharacteristic>
</subjectOf2>
<subjectOf1 typeCode="SUBJ">
<researchStudy classCode="CLNTRL" moodCode="EVN">
<title>{program}</title>
<code code="3" codeSystem="{study_type}" displayName="Other studies (patient support program)"/>
</researchStudy>
</subjectOf1>
</investigationEvent>
</subject>
</controlActProcess>
</PORR_IN049016UV>
</MCCI_IN200100UV01>
"#,
        report_type = oid::REPORT_TYPE,
        program = escape(icsr.program_id),
        study_type = oid::STUDY_TYPE,
    );
    Some(x)
}

/// The patient, the reaction and the suspect product.
fn component(x: &mut String, report: &AdverseEventReport) {
    let _ = write!(
        x,
        r#"<component typeCode="COMP">
<adverseEventAssessment classCode="INVSTG" moodCode="EVN">
<subject1 typeCode="SBJ">
<primaryRole classCode="INVSBJ">
<player1 classCode="PSN" determinerCode="INSTANCE">
<name>{initials}</name>
"#,
        initials = escape(&report.patient_initials),
    );
    let gender = match report.patient_sex.as_str() {
        "female" => Some(("F", "Female")),
        "male" => Some(("M", "Male")),
        _ => None,
    };
    if let Some((code, name)) = gender {
        let _ = writeln!(
            x,
            r#"<administrativeGenderCode code="{code}" codeSystem="{}" displayName="{name}"/>"#,
            oid::GENDER
        );
    }
    if !report.patient_birth_date.is_empty() {
        let _ = writeln!(
            x,
            r#"<birthTime value="{}"/>"#,
            report.patient_birth_date.replace('-', "")
        );
    }
    x.push_str("</player1>\n");
    if report.patient_age_years > 0 {
        let _ = write!(
            x,
            r#"<subjectOf2 typeCode="SBJ">
<observation classCode="OBS" moodCode="EVN">
<code code="3" codeSystem="{}" displayName="age"/>
<value xsi:type="PQ" value="{}" unit="a"/>
</observation>
</subjectOf2>
"#,
            oid::OBSERVATION,
            report.patient_age_years
        );
    }
    reaction(x, report);
    let _ = write!(
        x,
        r#"<subjectOf2 typeCode="SBJ">
<organizer classCode="CATEGORY" moodCode="EVN">
<code code="4" codeSystem="2.16.840.1.113883.3.989.2.1.1.20" displayName="drugInformation"/>
<component typeCode="COMP">
<substanceAdministration classCode="SBADM" moodCode="EVN">
<consumable typeCode="CSM">
<instanceOfKind classCode="INST">
<kindOfProduct classCode="MMAT" determinerCode="KIND">
<name>{product}</name>
</kindOfProduct>
</instanceOfKind>
</consumable>
</substanceAdministration>
</component>
</organizer>
</subjectOf2>
</primaryRole>
</subject1>
<component1 typeCode="COMP">
<causalityAssessment classCode="OBS" moodCode="EVN">
<code code="20" codeSystem="{observation}" displayName="interventionCharacterization"/>
<value xsi:type="CE" code="1" codeSystem="{drug_role}" displayName="Suspect"/>
</causalityAssessment>
</component1>
</adverseEventAssessment>
</component>
"#,
        product = escape(&report.suspect_product),
        observation = oid::OBSERVATION,
        drug_role = oid::DRUG_ROLE,
    );
}

/// The reaction as reported, its onset and each seriousness criterion.
fn reaction(x: &mut String, report: &AdverseEventReport) {
    let _ = write!(
        x,
        r#"<subjectOf2 typeCode="SBJ">
<observation classCode="OBS" moodCode="EVN">
<id root="reaction-1"/>
<code code="29" codeSystem="{observation}" displayName="reaction"/>
"#,
        observation = oid::OBSERVATION,
    );
    if !report.event_onset_date.is_empty() {
        let _ = writeln!(
            x,
            r#"<effectiveTime xsi:type="IVL_TS"><low value="{}"/></effectiveTime>"#,
            report.event_onset_date.replace('-', "")
        );
    }
    let _ = writeln!(
        x,
        r#"<value xsi:type="CE"><originalText>{}</originalText></value>"#,
        escape(&report.event_description)
    );
    for (criterion, code) in SERIOUSNESS_CODES {
        let _ = write!(
            x,
            r#"<outboundRelationship2 typeCode="PERT">
<observation classCode="OBS" moodCode="EVN">
<code code="{code}" codeSystem="{observation}" displayName="{criterion}"/>
<value xsi:type="BL" value="{present}"/>
</observation>
</outboundRelationship2>
"#,
            observation = oid::OBSERVATION,
            present = report.seriousness_criteria.iter().any(|c| c == criterion),
        );
    }
    x.push_str("</observation>\n</subjectOf2>\n");
}

/// E2B(R3) E.i.3.2's criteria and their ICH observation codes.
const SERIOUSNESS_CODES: [(&str, &str); 6] = [
    ("death", "34"),
    ("life_threatening", "21"),
    ("hospitalisation", "33"),
    ("disabling", "35"),
    ("congenital_anomaly", "12"),
    ("other_medically_important", "26"),
];

/// The reporter (C.2.r): name and qualification.
fn primary_source(x: &mut String, report: &AdverseEventReport, created: &str) {
    let qualification = match report.reporter_qualification.as_str() {
        "physician" => ("1", "Physician"),
        "pharmacist" => ("2", "Pharmacist"),
        "other_health_professional" => ("3", "Other health professional"),
        "lawyer" => ("4", "Lawyer"),
        _ => ("5", "Consumer or other non health professional"),
    };
    let _ = write!(
        x,
        r#"<outboundRelationship typeCode="SPRT">
<relatedInvestigation classCode="INVSTG" moodCode="EVN">
<code code="2" codeSystem="2.16.840.1.113883.3.989.2.1.1.22" displayName="sourceReport"/>
<subjectOf2 typeCode="SUBJ">
<controlActEvent classCode="CACT" moodCode="EVN">
<author typeCode="AUT">
<assignedEntity classCode="ASSIGNED">
<assignedPerson classCode="PSN" determinerCode="INSTANCE">
<name>{name}</name>
<asQualifiedEntity classCode="QUAL">
<code code="{code}" codeSystem="{qual_oid}" displayName="{display}"/>
</asQualifiedEntity>
</assignedPerson>
</assignedEntity>
</author>
<effectiveTime value="{created}"/>
</controlActEvent>
</subjectOf2>
</relatedInvestigation>
</outboundRelationship>
"#,
        name = escape(&report.reporter_name),
        code = qualification.0,
        display = qualification.1,
        qual_oid = oid::QUALIFICATION,
    );
}

/// `at` as HL7 writes an instant: `YYYYMMDDHHMMSS+0000`.
fn hl7_time(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d%H%M%S+0000").to_string()
}

#[cfg(test)]
mod tests {
    use touchpoint_proto::Timestamp;

    use super::*;

    fn decided() -> AdverseEventReported {
        AdverseEventReported {
            review_task_id: "task-1".into(),
            inbound_id: "in-1".into(),
            aware_at: Some(Timestamp {
                seconds: 1_796_000_000,
                nanos: 0,
            }),
            decision: "reported".into(),
            decided_by: "paula".into(),
            safety_reference: "SDB-2026-0042".into(),
            report: Some(AdverseEventReport {
                patient_initials: "J.D.".into(),
                patient_sex: "female".into(),
                patient_age_years: 54,
                reporter_name: "Jane <Doe> & Co".into(),
                reporter_qualification: "consumer".into(),
                suspect_product: "Examplimab".into(),
                event_description: "Rash after the second dose".into(),
                event_onset_date: "2026-11-30".into(),
                serious: true,
                seriousness_criteria: vec!["hospitalisation".into()],
                ..AdverseEventReport::default()
            }),
            ..AdverseEventReported::default()
        }
    }

    fn made(decided: &AdverseEventReported) -> Option<String> {
        let at = DateTime::from_timestamp(1_796_050_000, 0).unwrap_or_default();
        document(&Icsr {
            case_id: "case-1",
            program_id: "examplimab-support",
            decided,
            decided_at: at,
            message_id: "msg-1",
            now: at,
        })
    }

    #[test]
    fn a_report_carries_the_four_criteria_day_zero_and_seriousness() {
        let xml = made(&decided()).unwrap_or_default();
        for expected in [
            r#"<MCCI_IN200100UV01 xmlns="urn:hl7-org:v3""#,
            r#"<id extension="TOUCHPOINT-case-1-task-1""#,
            r#"<id extension="SDB-2026-0042""#,
            // Day zero (C.1.4): 2026-11-30 00:53:20 UTC.
            r#"<effectiveTime><low value="20261130005320+0000"/></effectiveTime>"#,
            "<name>J.D.</name>",
            r#"<administrativeGenderCode code="F""#,
            r#"value="54" unit="a""#,
            "<name>Jane &lt;Doe&gt; &amp; Co</name>",
            r#"<code code="5" codeSystem="2.16.840.1.113883.3.989.2.1.1.6""#,
            "<name>Examplimab</name>",
            r#"displayName="Suspect""#,
            "<originalText>Rash after the second dose</originalText>",
            r#"<low value="20261130"/>"#,
            r#"displayName="hospitalisation"/>
<value xsi:type="BL" value="true"/>"#,
            r#"displayName="death"/>
<value xsi:type="BL" value="false"/>"#,
        ] {
            assert!(xml.contains(expected), "missing {expected} in\n{xml}");
        }
        // Every element opened is closed, in order.
        let mut open: Vec<String> = Vec::new();
        for tag in xml.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if tag.starts_with('?') || tag.trim_end().ends_with("/>") || tag.contains("/>") {
                continue;
            }
            if tag.starts_with('/') {
                assert_eq!(open.pop().as_deref(), Some(name.as_str()), "{xml}");
            } else {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "left open: {open:?}");
    }

    #[test]
    fn a_decision_that_it_is_not_an_adverse_event_has_no_report() {
        let ruled_out = AdverseEventReported {
            decision: "not_adverse_event".into(),
            report: None,
            ..decided()
        };
        assert_eq!(made(&ruled_out), None);
    }
}
