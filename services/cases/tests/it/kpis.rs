//! The KPI projection against a recorded event stream: two cases' week written
//! out below, published to the topics as the other services would, each
//! figure's value checked, then the same values after a rebuild.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::testkit::utc;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::Timestamp;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AdverseEventSuspected, AttemptSent, AttemptSuppressed, CallTaskRequested, CallbackRequested,
    Channel, Envelope, GetKpisRequest, GetKpisResponse, InboundReceived, OptOutReceived,
    OutreachRequested, RebuildKpisRequest, SuppressionReason, TaskCompleted,
};

use crate::support::{PHONE, Service, WAIT, open_request, service};

fn at(rfc3339: &str) -> DateTime<Utc> {
    utc(rfc3339)
}

fn ts(rfc3339: &str) -> Option<Timestamp> {
    Some(timestamp(at(rfc3339)))
}

fn event(case_id: &str, when: &str, payload: Payload) -> Envelope {
    new_envelope(case_id, "test", at(when), payload, None)
}

fn requested(case_id: &str, attempt: &str, channel: Channel, when: &str) -> Envelope {
    event(
        case_id,
        when,
        Payload::OutreachRequested(OutreachRequested {
            attempt_id: attempt.into(),
            program_id: "adherence".into(),
            channel: channel as i32,
            due_at: ts(when),
            ..OutreachRequested::default()
        }),
    )
}

fn sent(case_id: &str, attempt: &str, when: &str) -> Envelope {
    event(
        case_id,
        when,
        Payload::AttemptSent(AttemptSent {
            attempt_id: attempt.into(),
            channel: Channel::Sms as i32,
            sent_at: ts(when),
            ..AttemptSent::default()
        }),
    )
}

fn done(
    case_id: &str,
    task: &str,
    kind: &str,
    attempt: &str,
    outcome: &str,
    when: &str,
) -> Envelope {
    event(
        case_id,
        when,
        Payload::TaskCompleted(TaskCompleted {
            task_id: task.into(),
            kind: kind.into(),
            outcome: outcome.into(),
            attempt_id: attempt.into(),
            coordinator_id: "coord-maria".into(),
        }),
    )
}

async fn open_at(svc: &mut Service, request_id: &str, enrolled: &str) -> String {
    let mut request = open_request(request_id, PHONE);
    request.enrolled_at = ts(enrolled);
    svc.client
        .open_case(request)
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
        .into_inner()
        .case_id
}

async fn kpis(svc: &Service) -> Option<GetKpisResponse> {
    svc.clone_client()
        .0
        .get_kpis(GetKpisRequest {
            program_ids: vec![],
            from_day: "2026-11-01".into(),
            to_day: "2026-11-07".into(),
            ..GetKpisRequest::default()
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

type Figures = BTreeMap<(String, String, String), i64>;

fn figures(answer: &GetKpisResponse) -> Figures {
    answer
        .figures
        .iter()
        .filter(|f| f.program_id == "adherence")
        .map(|f| {
            (
                (f.day.clone(), f.channel.clone(), f.figure.clone()),
                f.value,
            )
        })
        .collect()
}

/// Waits until the projection has folded everything and shows `expected`;
/// on timeout, says what it showed.
async fn projected(svc: &Service, expected: &Figures) -> GetKpisResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = kpis(svc).await;
        if let Some(answer) = &answer
            && answer.behind == 0
            && figures(answer) == *expected
        {
            return answer.clone();
        }
        if tokio::time::Instant::now() >= deadline {
            let shown = answer.as_ref().map(figures);
            panic!(
                "the projection never showed the worked example: {:#?}\nbehind: {:?}",
                shown,
                answer.map(|a| a.behind)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kpi_of_a_worked_week_and_the_same_after_a_rebuild() {
    let mut svc = service().await;
    // Days are in the site's zone, New York: 14:00 UTC is 09:00 there.
    let a = open_at(&mut svc, "kpi-a", "2026-11-02T14:00:00Z").await;
    let b = open_at(&mut svc, "kpi-b", "2026-11-02T15:00:00Z").await;

    svc.publish(
        Stream::Outreach,
        &[
            requested(&a, "a1", Channel::Sms, "2026-11-03T14:00:00Z"),
            requested(&b, "b1", Channel::Sms, "2026-11-03T14:00:00Z"),
            requested(&b, "b2", Channel::Email, "2026-11-03T14:00:00Z"),
            // Never attempted: the backlog.
            requested(&b, "b4", Channel::Sms, "2026-11-03T14:00:00Z"),
        ],
    )
    .await;
    svc.publish(
        Stream::Attempt,
        &[
            sent(&a, "a1", "2026-11-03T14:01:00Z"),
            sent(&b, "b1", "2026-11-03T14:02:00Z"),
            event(
                &b,
                "2026-11-03T14:03:00Z",
                Payload::AttemptSuppressed(AttemptSuppressed {
                    attempt_id: "b2".into(),
                    channel: Channel::Email as i32,
                    reason: SuppressionReason::NoConsent as i32,
                }),
            ),
            event(
                &b,
                "2026-11-04T14:00:00Z",
                Payload::CallTaskRequested(CallTaskRequested {
                    attempt_id: "b3".into(),
                    ..CallTaskRequested::default()
                }),
            ),
        ],
    )
    .await;
    svc.publish(
        Stream::Inbound,
        &[
            // A answers the text a day later and mentions a side effect.
            event(
                &a,
                "2026-11-04T15:00:00Z",
                Payload::InboundReceived(InboundReceived {
                    inbound_id: "i1".into(),
                    channel: Channel::Sms as i32,
                    received_at: ts("2026-11-04T15:00:00Z"),
                    in_reply_to_attempt_id: "a1".into(),
                }),
            ),
            event(
                &a,
                "2026-11-04T15:00:00Z",
                Payload::AdverseEventSuspected(AdverseEventSuspected {
                    inbound_id: "i1".into(),
                    received_at: ts("2026-11-04T15:00:00Z"),
                    report_due_at: ts("2026-11-05T15:00:00Z"),
                    review_task_id: "ae1".into(),
                    ..AdverseEventSuspected::default()
                }),
            ),
            // Maria answers A an hour later; B is reached on the call.
            done(&a, "t1", "inbound", "", "resolved", "2026-11-04T16:00:00Z"),
            done(&b, "b3t", "call", "b3", "reached", "2026-11-04T18:00:00Z"),
            // B texts STOP, twice.
            event(
                &b,
                "2026-11-04T19:00:00Z",
                Payload::OptOutReceived(OptOutReceived {
                    inbound_id: "i2".into(),
                    channel: Channel::Sms as i32,
                    received_at: ts("2026-11-04T19:00:00Z"),
                    ..OptOutReceived::default()
                }),
            ),
            event(
                &b,
                "2026-11-04T19:05:00Z",
                Payload::OptOutReceived(OptOutReceived {
                    inbound_id: "i3".into(),
                    channel: Channel::Sms as i32,
                    received_at: ts("2026-11-04T19:05:00Z"),
                    ..OptOutReceived::default()
                }),
            ),
            // A callback promised at 20:00 New York time, due the next day.
            event(
                &a,
                "2026-11-05T01:00:00Z",
                Payload::CallbackRequested(CallbackRequested {
                    inbound_id: "i4".into(),
                    task_id: "cb1".into(),
                    due_at: ts("2026-11-05T15:00:00Z"),
                    ..CallbackRequested::default()
                }),
            ),
            // The review 23 hours after receipt; the callback an hour late.
            done(
                &a,
                "ae1",
                "adverse_event_review",
                "",
                "resolved",
                "2026-11-05T14:00:00Z",
            ),
            done(&a, "cb1", "callback", "", "reached", "2026-11-05T16:00:00Z"),
        ],
    )
    .await;

    let day = |d: &str, channel: &str, figure: &str, value: i64| {
        (
            (
                format!("2026-11-0{d}"),
                channel.to_owned(),
                figure.to_owned(),
            ),
            value,
        )
    };
    let expected: Figures = [
        day("2", "", "enrolled", 2),
        day("3", "sms", "requested", 3),
        day("3", "email", "requested", 1),
        day("3", "sms", "attempted", 2),
        // A's text was answered: credited to the day it was sent.
        day("3", "sms", "reached", 1),
        day("3", "email", "suppressed:no_consent", 1),
        // First sends: A after 24 h 1 min, B after 23 h 2 min.
        day("3", "", "first_send", 2),
        day("3", "", "first_send_seconds", 86_460 + 82_920),
        day("4", "voice", "attempted", 1),
        day("4", "voice", "reached", 1),
        day("4", "sms", "inbound", 1),
        day("4", "sms", "responded", 1),
        day("4", "sms", "response_seconds", 3_600),
        // First contacts, not first sends: A's answer after 49 h, B's call
        // after 51 h.
        day("4", "", "first_contact", 2),
        day("4", "", "first_contact_seconds", 176_400 + 183_600),
        day("4", "", "opted_out", 1),
        day("4", "", "ae_flags", 1),
        day("4", "", "callbacks", 1),
        day("5", "", "ae_reviewed", 1),
        day("5", "", "ae_reviewed_in_24h", 1),
        day("5", "", "callbacks_done", 1),
    ]
    .into_iter()
    .collect();

    let first = projected(&svc, &expected).await;
    assert_eq!(first.time_zone, "America/New_York");
    let backlog: Vec<_> = first
        .backlog
        .iter()
        .map(|b| {
            (
                b.program_id.as_str(),
                b.channel.as_str(),
                b.age.as_str(),
                b.count,
            )
        })
        .collect();
    assert_eq!(
        backlog,
        [("adherence", "sms", "over_24h", 1)],
        "b4 is due, not attempted"
    );
    assert!(first.projected_through.is_some());

    // Summed over every program (the totals kept beside the figures), for
    // SMS: each day's figure once, a case's figures kept.
    let summed = svc
        .clone_client()
        .0
        .get_kpis(GetKpisRequest {
            from_day: "2026-11-01".into(),
            to_day: "2026-11-07".into(),
            channels: vec!["sms".into()],
            sum_programs: true,
            ..GetKpisRequest::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let summed: Figures = summed
        .figures
        .iter()
        .map(|f| {
            assert!(f.program_id.is_empty() && f.channel != "email", "{f:?}");
            (
                (f.day.clone(), f.channel.clone(), f.figure.clone()),
                f.value,
            )
        })
        .collect();
    assert_eq!(summed.get(&day("3", "sms", "attempted", 0).0), Some(&2));
    assert_eq!(summed.get(&day("2", "", "enrolled", 0).0), Some(&2));

    let rebuild = svc
        .client
        .rebuild_kpis(RebuildKpisRequest {})
        .await
        .unwrap_or_else(|e| panic!("rebuild: {e}"))
        .into_inner();
    assert!(rebuild.entries > 0, "the rebuild reads the timeline again");
    let again = projected(&svc, &expected).await;
    assert_eq!(again.backlog, first.backlog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_range_is_refused_by_field() {
    let mut svc = service().await;
    let status = svc
        .client
        .get_kpis(GetKpisRequest {
            program_ids: vec![],
            from_day: "2026-11-08".into(),
            to_day: "2026-11-01".into(),
            ..GetKpisRequest::default()
        })
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert_eq!(
        status,
        Some((
            tonic::Code::InvalidArgument,
            "from_day: after to_day".into()
        ))
    );
}
