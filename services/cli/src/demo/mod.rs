//! The demo `touchpoint up` runs on the local stack: a small team, six patients
//! enrolled at once, the programs' weeks on an accelerated clock, simulated
//! patients texting back through the SMS webhook as the provider would. It
//! shows a live line of counts, then each case's timeline and the KPI table.
//!
//! Everything goes through the services' public doors: cases and routing over
//! gRPC, replies as signed Twilio webhooks, progress from cases' event stream.
//! Nothing it prints carries a name, a number, an address or a message text.

pub mod cast;

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, TimeDelta, Utc};
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::grpc::client::AuthChannel as GrpcChannel;
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;
use touchpoint_proto::v1::{
    Channel, CommandMeta, Coordinator, GetKpisResponse, GetTimelineRequest, Presence,
    RecordTherapyEventRequest, Shift, TherapyEventKind, TimelineEntry, UpsertCoordinatorRequest,
    WatchEventsRequest,
};
use touchpoint_sandbox::{InboundText, post_inbound_text};

use cast::{PATIENTS, Patient, TEAM};

use crate::cases::{OpenArgs, open_with};
use crate::kpi_summary::Summary;
use crate::mesh::Peer;
use crate::show;
use crate::tally::Tally;

/// Where the demo finds the stack, and how long it runs.
#[derive(Debug)]
pub struct Settings {
    /// The cases service.
    pub cases: Peer,
    /// The routing service's gRPC.
    pub routing: Peer,
    /// Routing's SMS webhook, as the provider calls it (its signature covers it).
    pub sms_webhook: String,
    /// The token the provider signs webhooks with.
    pub sms_token: SecretString,
    /// The program's SMS number, which patients text.
    pub sms_number: String,
    /// The services' clock.
    pub clock: SharedClock,
    /// Simulated days to run.
    pub days: i64,
}

/// How long after a text reaches a patient they answer it, simulated.
const READING_TIME: TimeDelta = TimeDelta::hours(2);

/// The hours of the coordinator's day (Monday to Saturday) in which a demo
/// patient answers: well inside the team's 07:00 to 22:00 shifts, so an answer
/// the demo noticed late on a loaded machine still finds its coordinator.
const ANSWER_HOURS: std::ops::Range<u32> = 9..16;

/// After the last simulated day, how long the last events get to arrive.
const SETTLE: Duration = Duration::from_secs(5);

/// What the demo saw.
#[derive(Debug)]
pub struct Report {
    /// The counts over its cases' events.
    pub tally: Tally,
    /// Each patient with their case's timeline.
    pub timelines: Vec<(Patient, Vec<TimelineEntry>)>,
    /// The KPI projection's figures over the demo's days.
    pub kpis: GetKpisResponse,
}

/// Runs the demo to its end, prints what happened and returns it.
pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    let mut cases = CaseServiceClient::new(settings.cases.channel().await?);
    let mut routing = RoutingServiceClient::new(settings.routing.channel().await?);
    for member in &TEAM {
        routing
            .upsert_coordinator(UpsertCoordinatorRequest {
                coordinator: Some(coordinator(member)),
            })
            .await
            .context("UpsertCoordinator")?;
    }
    // From the start of the stream: the cursor of the first entry is not known
    // before the cases exist, and entries of other cases are skipped.
    let mut events = cases
        .watch_events(WatchEventsRequest::default())
        .await
        .context("WatchEvents")?
        .into_inner();

    let start = office_hours(&settings.clock).await;
    let mut demo_cases: HashMap<String, usize> = HashMap::new();
    let mut case_ids = Vec::new();
    for (i, patient) in PATIENTS.iter().enumerate() {
        let case_id = enrol(&mut cases, patient, start, i).await?;
        demo_cases.insert(case_id.clone(), i);
        case_ids.push(case_id);
    }
    println!(
        "\ndemo: {} cases enrolled at {} (simulated); running {} simulated days, a day every {:.1} s\n",
        PATIENTS.len(),
        start.format("%a %Y-%m-%d %H:%M UTC"),
        settings.days,
        real_seconds_per_day(&settings.clock)
    );

    let end = start + TimeDelta::days(settings.days);
    let mut replied = vec![false; PATIENTS.len()];
    let mut sms_attempts = std::collections::HashSet::new();
    // Answers a patient has yet to send: when, who, what, the text's sid.
    let mut answers = Vec::new();
    let mut tally = Tally::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut settle_until: Option<tokio::time::Instant> = None;
    let mut last_printed = None;
    loop {
        tokio::select! {
            entry = events.message() => {
                let Some(entry) = entry.context("the event stream broke")? else {
                    bail!("cases ended the event stream");
                };
                let Some(event) = &entry.event else { continue };
                let Some(&index) = demo_cases.get(&event.case_id) else { continue };
                tally.add(event);
                if let Some(Payload::AttemptSent(sent)) = &event.payload
                    && sent.channel == Channel::Sms as i32
                {
                    sms_attempts.insert(sent.attempt_id.clone());
                }
                // A patient answers a text once it has reached their phone.
                if let Some(Payload::AttemptDelivered(delivered)) = &event.payload
                    && sms_attempts.contains(&delivered.attempt_id)
                    && !replied[index]
                    && let Some(reply) = PATIENTS[index].reply
                {
                    replied[index] = true;
                    let sid = format!("SMdemo{}", delivered.attempt_id.replace('-', ""));
                    let zone = cast::coordinator_for(&PATIENTS[index]).zone;
                    let at = answer_at(settings.clock.now() + READING_TIME, zone);
                    answers.push((at, index, reply, sid));
                }
            }
            _ = ticker.tick() => {
                let now = settings.clock.now();
                for (_, index, reply, sid) in answers.extract_if(.., |(at, ..)| *at <= now) {
                    text_back(&settings, PATIENTS[index].mobile, reply.text(), &sid).await?;
                }
                let day = (now - start).num_days().min(settings.days);
                progress(&tally, day, settings.days, &mut last_printed);
                match settle_until {
                    None if now >= end => settle_until = Some(tokio::time::Instant::now() + SETTLE),
                    Some(at) if tokio::time::Instant::now() >= at => break,
                    _ => {}
                }
            }
        }
    }
    println!("\n");

    let mut timelines = Vec::new();
    for (case_id, patient) in case_ids.iter().zip(PATIENTS.iter()) {
        let entries = timeline(&mut cases, case_id).await?;
        let behaviour = patient.reply.map_or("does not answer", |r| r.label());
        println!("{} ({case_id}), {behaviour}", patient.label);
        print!("{}", show::timeline(patient.zone, &entries));
        timelines.push((*patient, entries));
    }
    // The KPIs as the cases service's projection counts them, over the days
    // the demo ran (a day either side: the site's zone is not UTC).
    let ask = crate::kpi::Ask {
        from: (start - TimeDelta::days(1)).format("%Y-%m-%d").to_string(),
        to: (end + TimeDelta::days(1)).format("%Y-%m-%d").to_string(),
        programs: Vec::new(),
    };
    let kpis = crate::kpi::settled(&settings.cases, &ask, SETTLE).await?;
    print!("{}", show::kpi_table(&Summary::of(&kpis).rows()));
    Ok(Report {
        tally,
        timelines,
        kpis,
    })
}

/// The first instant from `now` in the team's office hours: a weekday, 13:00 to
/// 14:00 UTC (08:00 in New York, 06:00 in Denver, in winter).
fn next_office_hour(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{Datelike as _, Timelike as _, Weekday};
    let weekday = |t: DateTime<Utc>| !matches!(t.weekday(), Weekday::Sat | Weekday::Sun);
    if weekday(now) && now.hour() == 13 {
        return now;
    }
    let mut day = now
        .date_naive()
        .and_hms_opt(13, 0, 0)
        .map_or(now, |t| t.and_utc());
    if day < now {
        day += TimeDelta::days(1);
    }
    while !weekday(day) {
        day += TimeDelta::days(1);
    }
    day
}

/// The first instant from `from` inside [`ANSWER_HOURS`] on a Monday to
/// Saturday in `zone` (an unknown zone: `from`).
fn answer_at(from: DateTime<Utc>, zone: &str) -> DateTime<Utc> {
    use chrono::{Datelike as _, Timelike as _, Weekday};
    let Ok(tz) = zone.parse::<chrono_tz::Tz>() else {
        return from;
    };
    let local = from.with_timezone(&tz);
    if local.weekday() != Weekday::Sun && ANSWER_HOURS.contains(&local.hour()) {
        return from;
    }
    let mut day = local.date_naive();
    if local.hour() >= ANSWER_HOURS.start {
        day += TimeDelta::days(1);
    }
    if day.weekday() == Weekday::Sun {
        day += TimeDelta::days(1);
    }
    day.and_hms_opt(ANSWER_HOURS.start, 0, 0)
        .and_then(|t| t.and_local_timezone(tz).earliest())
        .map_or(from, |t| t.to_utc())
}

/// Waits on the services' clock until office hours, so the demo's replies find
/// the team on shift however long the stack took to start; returns the instant.
async fn office_hours(clock: &SharedClock) -> DateTime<Utc> {
    let at = next_office_hour(clock.now());
    loop {
        let now = clock.now();
        if now >= at {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn real_seconds_per_day(clock: &SharedClock) -> f64 {
    let now = clock.now();
    clock
        .real_wait_until(now + TimeDelta::days(1))
        .as_secs_f64()
}

/// The live line: rewritten in place on a terminal; elsewhere (a log, CI) a
/// new line every fifth simulated day.
fn progress(tally: &Tally, day: i64, days: i64, last_printed: &mut Option<i64>) {
    let terminal = std::io::stdout().is_terminal();
    let due = match *last_printed {
        None => true,
        Some(last) => day >= last + 5 || (day == days && last != days),
    };
    if !terminal && !due {
        return;
    }
    *last_printed = Some(day);
    print!(
        "{}day {day:>3} of {days} | requested {:>3} | sent {:>3} | delivered {:>3} | replies {:>2} | routed {:>2} | suppressed {:>3} | AE flags {} {}",
        if terminal { "\r " } else { " " },
        tally.requested,
        tally.sent_total(),
        tally.delivered,
        tally.replies,
        tally.routed,
        tally.suppressed_total(),
        tally.ae_flags,
        if terminal { "" } else { "\n" },
    );
    let _ = std::io::stdout().flush();
}

/// Opens `patient`'s case at `at` with their consents, coordinator and therapy.
async fn enrol(
    cases: &mut CaseServiceClient<GrpcChannel>,
    patient: &Patient,
    at: DateTime<Utc>,
    index: usize,
) -> anyhow::Result<String> {
    let request_id = format!("demo-{}-{index}", at.timestamp());
    let args = OpenArgs {
        program: patient.program.into(),
        language: patient.language,
        time_zone: patient.zone.into(),
        given: patient.name.0.into(),
        family: patient.name.1.into(),
        mobile: patient.mobile.into(),
        email: patient.email.into(),
        consents: patient.consents.to_vec(),
        coordinator: cast::coordinator_for(patient).id.into(),
        navigator: "nav-ines".into(),
        request_id: Some(request_id.clone()),
    };
    let (case_id, _) = open_with(cases, &args, at, "touchpoint-demo").await?;
    // Therapy starts two days in; a refill patient's first fill lasts ten days.
    let (kind, days_supply) = if patient.program == "refill-reminder" {
        (TherapyEventKind::Fill, 10)
    } else {
        (TherapyEventKind::TherapyStart, 0)
    };
    cases
        .record_therapy_event(RecordTherapyEventRequest {
            meta: Some(CommandMeta {
                request_id: format!("{request_id}-therapy"),
                expected_version: None,
                actor: "touchpoint-demo".into(),
            }),
            case_id: case_id.clone(),
            kind: kind as i32,
            at: Some(timestamp(at + TimeDelta::days(2))),
            days_supply,
        })
        .await
        .context("RecordTherapyEvent")?;
    Ok(case_id)
}

/// A patient's text arriving as the SMS provider delivers it: a signed form post.
async fn text_back(settings: &Settings, from: &str, body: &str, sid: &str) -> anyhow::Result<()> {
    let text = InboundText {
        from,
        to: &settings.sms_number,
        body,
        sid,
    };
    match post_inbound_text(
        &settings.sms_webhook,
        settings.sms_token.expose_secret(),
        &text,
    )
    .await
    {
        Some(status) if (200..300).contains(&status) => Ok(()),
        Some(status) => bail!("routing answered a patient's text with {status}"),
        None => bail!("routing's SMS webhook did not answer"),
    }
}

/// Every entry of `case_id`'s timeline, page by page.
pub async fn timeline(
    cases: &mut CaseServiceClient<GrpcChannel>,
    case_id: &str,
) -> anyhow::Result<Vec<TimelineEntry>> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = cases
            .get_timeline(GetTimelineRequest {
                case_id: case_id.into(),
                kinds: vec![],
                page_size: 1000,
                page_token,
            })
            .await
            .context("GetTimeline")?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(entries);
        }
        page_token = page.next_page_token;
    }
}

/// A demo team member on the roster: the programs, Monday to Saturday 07:00 to
/// 22:00 in their zone, available. Long days, so a reply is met by its
/// coordinator even when a loaded machine lets the fast clock run hours ahead
/// of the demo's own reactions.
fn coordinator(member: &cast::Member) -> Coordinator {
    Coordinator {
        coordinator_id: member.id.into(),
        role: member.role as i32,
        time_zone: member.zone.into(),
        program_ids: vec!["adherence".into(), "refill-reminder".into()],
        languages: member.languages.iter().map(|l| *l as i32).collect(),
        skills: vec![],
        capacity: 50,
        presence: Presence::Available as i32,
        shifts: (1..=6)
            .map(|weekday| Shift {
                weekday,
                start: "07:00".into(),
                end: "22:00".into(),
            })
            .collect(),
        open_tasks: 0,
        on_shift: false,
        updated_by: String::new(),
        dial_to: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.to_utc())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_demo_starts_in_the_next_weekday_office_hour() {
        // In the hour: at once.
        let monday = at("2027-01-04T13:20:00Z");
        assert_eq!(next_office_hour(monday), monday);
        // Later on Monday: Tuesday morning.
        assert_eq!(
            next_office_hour(at("2027-01-04T22:00:00Z")),
            at("2027-01-05T13:00:00Z")
        );
        // Early on Tuesday: that morning.
        assert_eq!(
            next_office_hour(at("2027-01-05T02:00:00Z")),
            at("2027-01-05T13:00:00Z")
        );
        // Friday evening: Monday.
        assert_eq!(
            next_office_hour(at("2027-01-08T15:00:00Z")),
            at("2027-01-11T13:00:00Z")
        );
    }

    #[test]
    fn a_demo_patient_answers_in_the_coordinators_daytime() {
        let new_york = "America/New_York";
        // 11:00 in New York on a Tuesday: at once.
        let tuesday = at("2027-01-05T16:00:00Z");
        assert_eq!(answer_at(tuesday, new_york), tuesday);
        // 22:17 on a Friday, past the hours: 09:00 on Saturday.
        assert_eq!(
            answer_at(at("2027-01-09T03:17:00Z"), new_york),
            at("2027-01-09T14:00:00Z")
        );
        // 06:00 on a Friday: 09:00 that day.
        assert_eq!(
            answer_at(at("2027-01-08T11:00:00Z"), new_york),
            at("2027-01-08T14:00:00Z")
        );
        // Saturday evening: Monday 09:00, as nobody works Sundays.
        assert_eq!(
            answer_at(at("2027-01-09T23:00:00Z"), new_york),
            at("2027-01-11T14:00:00Z")
        );
    }
}
