//! SLA alerts: a callback past its due time reaches the program's supervisors
//! through the SMTP relay patient mail takes, once, with the case's id and a
//! link and no patient data; one done before it was due is never mailed; one
//! due within two hours is warned of.

use chrono::TimeDelta;
use touchpoint_dispatch::SmtpRelay;
use touchpoint_dispatch::providers::email::{MailTls, StartTls, Unsubscribe};
use touchpoint_dispatch::sla::Recipients;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::testkit::events::{EMAIL, MOBILE, event};
use touchpoint_platform::testkit::{eventually, utc};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{CallbackRequested, Channel, Envelope, TaskCompleted};
use touchpoint_sandbox::smtp::{SmtpOptions, SmtpServer};

use crate::support::*;

fn callback(case_id: &str, task: &str, due_in: TimeDelta) -> (Stream, Envelope) {
    (
        Stream::Inbound,
        event(
            case_id,
            Payload::CallbackRequested(CallbackRequested {
                inbound_id: format!("in-{task}"),
                task_id: task.into(),
                queue: "program:adherence".into(),
                due_at: Some(timestamp(utc(NOW) + due_in)),
            }),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_callback_is_mailed_to_the_supervisors_once_without_patient_data() {
    let smtp = SmtpServer::start(SmtpOptions::default())
        .await
        .unwrap_or_else(|e| panic!("smtp server: {e}"));
    let addr = smtp.addr();
    let world = World::running_with(NOW, |c| {
        c.smtp = Some(SmtpRelay {
            host: addr.ip().to_string(),
            port: addr.port(),
            from: "Care Team <care@hub.example>".into(),
            credentials: None,
            rate: None,
            unsubscribe: Unsubscribe {
                url: "http://127.0.0.1:9/unsubscribe/email".into(),
                key: "unsubscribe-key".into(),
            },
            tls: MailTls {
                mode: StartTls::Never,
                extra_roots: None,
            },
        });
        c.sla.recipients = Recipients::parse("adherence=lead@hub.example+nurse@hub.example")
            .unwrap_or_else(|e| panic!("{e}"));
        c.sla.desk_url = Some("https://desk.hub.example".into());
        c.sla.poll = std::time::Duration::from_millis(100);
    })
    .await;
    for case in ["case-late", "case-kept", "case-second"] {
        world.open_case(case, &[Channel::Sms, Channel::Email]).await;
    }
    world
        .publish(&[
            // Due a minute ago: late at once.
            callback("case-late", "cb-late", TimeDelta::minutes(-1)),
            // Due in three hours, and done now: never late, nor near.
            callback("case-kept", "cb-kept", TimeDelta::hours(3)),
            (
                Stream::Inbound,
                event(
                    "case-kept",
                    Payload::TaskCompleted(TaskCompleted {
                        task_id: "cb-kept".into(),
                        kind: "callback".into(),
                        outcome: "reached".into(),
                        ..TaskCompleted::default()
                    }),
                ),
            ),
        ])
        .await;
    let first = eventually("the alert at the relay", WAIT, || async {
        smtp.mails().first().cloned()
    })
    .await;
    assert_eq!(first.to, ["lead@hub.example", "nurse@hub.example"]);
    // The text as read: quoted-printable's soft line breaks joined.
    let text = first.data.replace("=\r\n", "").replace("=\n", "");
    assert!(text.contains("Subject: Touchpoint: 1 SLA alert(s) in adherence"));
    assert!(
        text.contains("case case-late https://desk.hub.example/cases/case-late"),
        "{text}"
    );
    // Ana Ruiz's name, number and address are on her case; none is mailed.
    for secret in ["Ruiz", MOBILE, EMAIL] {
        assert!(!text.contains(secret), "{secret} mailed");
    }

    // A later one comes in a mail of its own: the first is not mailed again,
    // and the one done in time never is.
    world
        .publish(&[callback("case-second", "cb-second", TimeDelta::minutes(-1))])
        .await;
    eventually("the second alert", WAIT, || async {
        (smtp.mails().len() >= 2).then_some(())
    })
    .await;
    let mails = smtp.mails();
    let mentions = |case: &str| mails.iter().filter(|m| m.data.contains(case)).count();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        (
            mentions("case-late"),
            mentions("case-second"),
            mentions("case-kept")
        ),
        (1, 1, 0)
    );

    // One due in 90 minutes is warned of once, before it is late.
    world
        .open_case("case-soon", &[Channel::Sms, Channel::Email])
        .await;
    world
        .publish(&[callback("case-soon", "cb-soon", TimeDelta::minutes(90))])
        .await;
    let warning = eventually("the warning", WAIT, || async {
        smtp.mails()
            .into_iter()
            .find(|m| m.data.contains("case-soon"))
    })
    .await;
    let text = warning.data.replace("=\r\n", "").replace("=\n", "");
    assert!(text.contains("Callback due within 2 hours"), "{text}");
    assert_eq!(smtp.mails().len(), 3);
}
