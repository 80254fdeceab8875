//! End-to-end load: patients enrolled in a program whose first step is due at
//! once, the four services as separate processes.
//!
//! ```text
//! cargo run --release -p touchpoint-tests --bin e2e-bench -- [PATIENTS] [OPENERS]
//! cargo run --release -p touchpoint-tests --bin e2e-bench -- soak RATE [MINUTES] [OPENERS]
//! ```
//!
//! Defaults: 100000 patients, 32 opening clients; a soak runs 10 minutes. Uses
//! the test harness: a fresh database on `DATABASE_URL`'s server and
//! `KAFKA_BROKERS` or a Tansu broker of its own. The SMS provider is the
//! sandbox, in this process, without a rate limit.
//!
//! 1. **Enrol.** The services start on the system clock. The clients open the
//!    cases through cases' gRPC API (`OpenCase`, then `RecordConsent` for SMS),
//!    enrolled a day ahead, from `zero` on, in a zone where `zero` is early
//!    afternoon: all at `zero` for a burst, in a program of one text. For a
//!    soak, RATE × 60 patients enrolled one after another over a minute, in a
//!    program of a text a minute for MINUTES: RATE texts fall due each second.
//!    The run waits until cadence has planned every enrolment and dispatch and
//!    routing have projected every case.
//! 2. **Run.** The services are stopped (SIGTERM) and started again on a clock
//!    that reaches `zero` ten seconds later. The run ends when every attempt is
//!    recorded `AttemptSent` on its case timeline (cases' `timeline` table; the
//!    recorded time is the start of the transaction that applied it).
//!
//! Prints attempts/s from the first due instant to the last `AttemptSent`, the
//! lag of each from its due instant (p50/p99/max), that the provider took one
//! text per patient, each service's peak RSS (`VmHWM`) in both phases, and how
//! the run's CPU time split between the services, Tansu, PostgreSQL and this
//! process (the provider's stand-in), and how far cases' KPI projection
//! trailed the timeline, and what the run cost PostgreSQL per attempt (WAL
//! bytes, rows inserted, updated and deleted by schema, transactions;
//! `touchpoint_tests::db_work`). A soak also prints, every minute, the
//! attempts recorded in it, their lag p99 and each service's RSS. On a server
//! whose autovacuum is off, a soak vacuums the database once a minute in its
//! place (see `touchpoint_tests::vacuum`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use touchpoint_cli::cases::{OpenArgs, client, open_with};
use touchpoint_cli::stack::{SERVICES, Services, Stack};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::{decode, instant};
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, Language};
use touchpoint_sandbox::Sandbox;
use touchpoint_tests::bench::{self, ProcessUse, percentile, zone_open_at};
use touchpoint_tests::vacuum::{self, Vacuum};
use touchpoint_tests::{db_work, system};

/// The program: `steps` texts a minute apart, the first at enrolment.
fn program(steps: usize) -> String {
    let steps: Vec<(String, String, String)> = (0..steps)
        .map(|m| (format!("minute-{m}"), format!("{m}m"), "welcome".to_owned()))
        .collect();
    system::sms_program("load", 24, &steps)
}

const TEMPLATE: &str = "Welcome to your support program. Reply HELP for help, STOP to opt out.";
/// How long after the restart the burst falls due: time for the services to
/// start and their consumers to join.
const LEAD: TimeDelta = TimeDelta::seconds(10);
const SETTLE_LIMIT: Duration = Duration::from_secs(900);
/// How long the run may take beyond its last due instant.
const BURST_LIMIT: Duration = Duration::from_secs(900);
const ATTEMPT_SENT: &str = "touchpoint.v1.AttemptSent";
const REQUESTED: &str = "touchpoint.v1.OutreachRequested";
/// How far before an attempt's window its request is looked for.
const REQUEST_LOOKBACK: TimeDelta = TimeDelta::minutes(5);
/// How long after a soak's minute ends before it is read: its last
/// transactions have committed by then.
const MINUTE_GRACE: TimeDelta = TimeDelta::seconds(10);
/// How often a soak vacuums on a server without autovacuum: autovacuum's own
/// default nap between looks at a database.
const VACUUM_EVERY: Duration = Duration::from_secs(60);

/// When the patients fall due.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// All at once.
    Burst { patients: usize },
    /// `rate` a second for `minutes`: `rate` × 60 patients a second apart /
    /// `rate`, each with a text a minute.
    Soak { rate: usize, minutes: usize },
}

impl Load {
    fn patients(self) -> usize {
        match self {
            Load::Burst { patients } => patients,
            // One minute's worth: each has a step due every minute.
            Load::Soak { rate, .. } => rate * 60,
        }
    }

    /// The program's steps: one for a burst, one a minute for a soak.
    fn steps(self) -> usize {
        match self {
            Load::Burst { .. } => 1,
            Load::Soak { minutes, .. } => minutes,
        }
    }

    /// Attempts the run makes.
    fn attempts(self) -> usize {
        self.patients() * self.steps()
    }

    /// How long after the first due instant patient `i` is enrolled (its first
    /// step falls due).
    fn offset(self, i: usize) -> TimeDelta {
        match self {
            Load::Burst { .. } => TimeDelta::zero(),
            Load::Soak { rate, .. } => {
                TimeDelta::microseconds((i as i64).saturating_mul(1_000_000) / rate.max(1) as i64)
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |at: usize, name: &str, default: usize| -> anyhow::Result<usize> {
        args.get(at)
            .map(|a| a.parse())
            .transpose()
            .with_context(|| format!("{name} must be a number"))
            .map(|n| n.unwrap_or(default))
    };
    let (load, openers) = if args.first().is_some_and(|a| a == "soak") {
        let rate = number(1, "RATE", 0)?;
        if rate == 0 {
            bail!("soak needs a RATE of attempts per second, e.g. `soak 1000`");
        }
        let minutes = number(2, "MINUTES", 10)?;
        if !(1..=24).contains(&minutes) {
            // A text a minute, and programs allow at most 24 a day.
            bail!("a soak runs 1 to 24 minutes");
        }
        (Load::Soak { rate, minutes }, number(3, "OPENERS", 32)?)
    } else {
        let patients = number(0, "PATIENTS", 100_000)?;
        (Load::Burst { patients }, number(1, "OPENERS", 32)?)
    };
    let patients = load.patients();
    let attempts = load.attempts();
    let openers = openers.max(1);
    if patients == 0 || patients > 8_000_000 {
        bail!("between 1 and 8000000 patients");
    }

    let zero = Utc::now() + TimeDelta::days(1);
    let zone = zone_open_at(zero);
    let work = std::env::temp_dir().join(format!("tp-e2e-bench-{}", std::process::id()));
    let programs_dir = write_program(&work, load.steps())?;
    let log_dir = work.join("logs");
    std::fs::create_dir_all(&log_dir)?;

    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let sms = Sandbox::start(system::SMS_ACCOUNT, system::SMS_AUTH_TOKEN).await?;
    let mut services = system::services(&database, &prefix, &programs_dir, sms.url(), &log_dir);
    services.common.push(("RUST_LOG".into(), "warn".into()));
    let pool = PgPool::connect(&database.url).await?;

    // Phase 1: enrol.
    let mut stack = Stack::default();
    stack.start_services(&services).await?;
    println!(
        "e2e-bench: {load:?}: {patients} patients, {openers} clients opening cases; \
         zone {zone}; logs in {}",
        log_dir.display()
    );
    let started = Instant::now();
    open_cases(&services, load, openers, zero, &zone.to_string()).await?;
    let opened_in = started.elapsed().as_secs_f64();
    println!(
        "enrol: {patients} cases opened in {opened_in:.1} s ({:.0} cases/s, two commands each)",
        patients as f64 / opened_in
    );
    wait_until_taken_in(&pool, patients).await?;
    println!(
        "enrol: cadence planned, dispatch and routing projected all {patients} cases {:.1} s \
         after the first was opened",
        started.elapsed().as_secs_f64()
    );
    let enrolling = usage(&stack);
    let unclean = stack.stop().await;
    if !unclean.is_empty() {
        bail!("{unclean:?} did not stop cleanly after enrolling");
    }

    // Phase 2: the first due instant LEAD after the services start again.
    let first_position: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM cases.timeline")
            .fetch_one(&pool)
            .await?;
    let epoch = Utc::now();
    let due = epoch + LEAD;
    services.clock = Some(ClockConfig::Accelerated {
        start: zero - LEAD,
        epoch,
        speed: 1.0,
    });
    let mut stack = Stack::default();
    stack.start_services(&services).await?;
    let vacuum = match load {
        Load::Soak { .. } if !vacuum::autovacuum_on(&pool).await? => {
            println!(
                "run: this server's autovacuum is off; the soak vacuums its database every \
                 {VACUUM_EVERY:?} in its place, throttled as autovacuum is"
            );
            Some(Vacuum::every(pool.clone(), VACUUM_EVERY))
        }
        _ => None,
    };
    let serving = Utc::now();
    if serving > due {
        println!(
            "run: the services took {:.1} s to serve, after the first due instant",
            (serving - epoch).num_milliseconds() as f64 / 1000.0
        );
    }
    let wait = (due - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let db_before = db_work::read(&pool).await?;
    let before = Snapshot::take(&stack, &services);
    let mut peaks: BTreeMap<String, u64> = BTreeMap::new();
    let limit = BURST_LIMIT + Duration::from_secs(60 * load.steps() as u64);
    let deadline = Instant::now() + limit;
    let mut last_print = Instant::now();
    let mut minutes_reported = 0;
    let mut kpi_lag = KpiLag::new(pool.clone());
    let mut recorded = TimelineReader {
        pool: pool.clone(),
        after: first_position,
        zero,
        due,
        marks: Vec::new(),
    };
    loop {
        // Counting reads every row of the run, millions in a soak, where it
        // would load the server more each minute: a soak counts only once the
        // provider has taken every text.
        let taken = sms.received_count();
        let sent: i64 = if matches!(load, Load::Soak { .. }) && taken < attempts {
            0
        } else {
            sqlx::query_scalar(
                "SELECT count(*) FROM cases.timeline WHERE position > $1 AND kind = $2",
            )
            .bind(first_position)
            .bind(ATTEMPT_SENT)
            .fetch_one(&pool)
            .await?
        };
        if matches!(load, Load::Soak { .. }) {
            recorded.mark().await?;
        }
        kpi_lag.sample().await?;
        let now = usage(&stack);
        for (name, used) in &now {
            let peak = peaks.entry(name.clone()).or_default();
            *peak = (*peak).max(used.peak_rss_kib);
        }
        // A soak reports each minute once its last transactions have committed.
        if let Load::Soak { .. } = load
            && Utc::now() > due + TimeDelta::minutes(minutes_reported + 1) + MINUTE_GRACE
        {
            let from = due + TimeDelta::minutes(minutes_reported);
            let lags = recorded.lags(from, from + TimeDelta::minutes(1)).await?;
            minutes_reported += 1;
            print_minute(minutes_reported, &lags, &now, state_size(&pool).await?);
        }
        if sent as usize >= attempts {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after {limit:?} the provider had taken {taken} and the timelines held {sent} of \
                 {attempts} attempts"
            );
        }
        if last_print.elapsed() >= Duration::from_secs(5) && matches!(load, Load::Burst { .. }) {
            last_print = Instant::now();
            println!(
                "burst: {sent} of {attempts} AttemptSent on the timelines after {:.0} s",
                (Utc::now() - due).num_seconds()
            );
        }
        // A soak's minutes are read from the timeline: look less often.
        let every = match load {
            Load::Burst { .. } => Duration::from_millis(500),
            Load::Soak { .. } => Duration::from_secs(2),
        };
        tokio::time::sleep(every).await;
    }
    let caught_up = kpi_lag.until_caught_up(limit).await?;
    let after = Snapshot::take(&stack, &services);
    let running = usage(&stack);
    if let Some(vacuum) = vacuum {
        let passes = vacuum.stop().await;
        println!(
            "run: {} vacuum passes, the longest {:.1} s (their CPU is PostgreSQL's below)",
            passes.done,
            passes.longest.as_secs_f64()
        );
    }
    // Every attempt is recorded, so the minutes left are complete, and the
    // states no longer change.
    if minutes_reported < load.steps() as i64 && matches!(load, Load::Soak { .. }) {
        let state_bytes = state_size(&pool).await?;
        while minutes_reported < load.steps() as i64 {
            let from = due + TimeDelta::minutes(minutes_reported);
            let lags = recorded.lags(from, from + TimeDelta::minutes(1)).await?;
            minutes_reported += 1;
            print_minute(minutes_reported, &lags, &running, state_bytes);
        }
    }

    let lags = recorded
        .lags(due - TimeDelta::days(1), Utc::now() + TimeDelta::days(1))
        .await?;
    let last = recorded.last_recorded().await?;
    let span = (last - due).num_milliseconds() as f64 / 1000.0;
    let distinct_cases: HashSet<&str> = lags.iter().map(|(case, _)| case.as_str()).collect();
    let mut lags: Vec<f64> = lags.iter().map(|(_, lag)| *lag).collect();
    lags.sort_by(f64::total_cmp);
    let texts = sms.received();
    let distinct_numbers: HashSet<&str> = texts.iter().map(|t| t.to.as_str()).collect();
    let what = match load {
        Load::Burst { .. } => format!("{patients} due at once"),
        Load::Soak { rate, minutes } => {
            format!("{rate}/s due for {minutes} min ({patients} patients, a text a minute each)")
        }
    };
    println!(
        "run: {what}; the last AttemptSent on its timeline {span:.2} s after the first due \
         instant: {:.0} attempts/s end to end (target >= 2000 for a burst)",
        attempts as f64 / span
    );
    println!(
        "run: lag due -> AttemptSent on the timeline: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
         (target p99 <= 2000 ms)",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0)
    );
    println!(
        "run: the provider took {} texts for {} numbers; {} AttemptSent for {} cases",
        texts.len(),
        distinct_numbers.len(),
        lags.len(),
        distinct_cases.len()
    );
    kpi_lag.print(last, caught_up);
    println!("peak RSS (VmHWM), MiB, enrolling / run (target <= 200):");
    for name in SERVICES {
        let of = |list: &[(String, ProcessUse)]| {
            list.iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, u)| u.peak_rss_kib)
        };
        let run_peak = peaks.get(name).copied().unwrap_or(0).max(of(&running));
        println!(
            "  {name:<9} {:>6.1} / {:>6.1}",
            of(&enrolling) as f64 / 1024.0,
            run_peak as f64 / 1024.0
        );
    }
    after.print_split(&before);

    let unclean = stack.stop().await;
    if !unclean.is_empty() {
        bail!("{unclean:?} did not stop cleanly after the run");
    }
    // Read once the services are gone: a backend reports its counts as it exits.
    let db_after = db_work::read(&pool).await?;
    db_work::between(&pool, &db_before, &db_after)
        .await?
        .print_per_attempt(attempts);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// How far cases' KPI projection trails the timeline during the run.
#[derive(Debug)]
struct KpiLag {
    pool: PgPool,
    /// The most entries recorded and not yet folded, seen at any sample.
    max_behind: i64,
    /// The longest a recorded entry waited to be folded, seen at any sample.
    max_wait: TimeDelta,
}

impl KpiLag {
    fn new(pool: PgPool) -> Self {
        Self {
            pool,
            max_behind: 0,
            max_wait: TimeDelta::zero(),
        }
    }

    /// Entries not yet folded, and when the oldest of them was recorded.
    async fn behind(&self) -> anyhow::Result<(i64, Option<DateTime<Utc>>)> {
        Ok(sqlx::query_as(
            "SELECT count(*), min(t.recorded_at) FROM cases.timeline t, cases.kpi_cursor c
             WHERE (t.writer_xid, t.position) > (c.writer_xid, c.position)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Notes how far behind the projection is; returns the entries behind.
    async fn sample(&mut self) -> anyhow::Result<i64> {
        let (behind, oldest) = self.behind().await?;
        self.max_behind = self.max_behind.max(behind);
        if let Some(oldest) = oldest {
            self.max_wait = self.max_wait.max(Utc::now() - oldest);
        }
        Ok(behind)
    }

    /// Samples until the projection has folded everything; returns when.
    async fn until_caught_up(&mut self, limit: Duration) -> anyhow::Result<DateTime<Utc>> {
        let deadline = Instant::now() + limit;
        loop {
            if self.sample().await? == 0 {
                return Ok(Utc::now());
            }
            if Instant::now() > deadline {
                bail!("the KPI projection had not caught up after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn print(&self, last_sent: DateTime<Utc>, caught_up: DateTime<Utc>) {
        println!(
            "kpi: the projection had folded every entry {:.2} s after the last AttemptSent was \
             recorded; at most {} entries behind, the oldest waiting {:.2} s, while the run went",
            (caught_up - last_sent).num_milliseconds().max(0) as f64 / 1000.0,
            self.max_behind,
            self.max_wait.num_milliseconds() as f64 / 1000.0
        );
    }
}

/// Reads the `AttemptSent` entries recorded during the run.
#[derive(Debug)]
struct TimelineReader {
    pool: PgPool,
    /// The last timeline position before the run.
    after: i64,
    /// The first due instant on the services' clock ...
    zero: DateTime<Utc>,
    /// ... and in real time.
    due: DateTime<Utc>,
    /// (when, the timeline's last position then), read as the run goes: a
    /// row recorded after `when` has a later position, since positions come
    /// from an identity in the order rows are written and a row is recorded
    /// at its transaction's start. A soak's minute is then read from a mark
    /// shortly before it, not from the run's start: each read stays the size
    /// of a few minutes of timeline instead of growing with the run.
    marks: Vec<(DateTime<Utc>, i64)>,
}

impl TimelineReader {
    /// Notes where the timeline ends now.
    async fn mark(&mut self) -> anyhow::Result<()> {
        let now = Utc::now();
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM cases.timeline")
            .fetch_one(&self.pool)
            .await?;
        self.marks.push((now, last));
        Ok(())
    }

    /// A position every row recorded at or after `at` comes after.
    fn position_before(&self, at: DateTime<Utc>) -> i64 {
        self.marks
            .iter()
            .rev()
            .find(|(when, _)| *when < at)
            .map_or(self.after, |(_, position)| (*position).max(self.after))
    }

    /// (case, lag in ms from its request's due time) of each `AttemptSent`
    /// recorded in `from..until`. The due time is the `OutreachRequested`'s,
    /// on the timeline shortly before.
    async fn lags(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        let rows: Vec<(String, Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT kind, envelope, recorded_at FROM cases.timeline
              WHERE position > $1 AND kind = ANY($2) AND recorded_at >= $3 AND recorded_at < $4",
        )
        .bind(self.position_before(from - REQUEST_LOOKBACK))
        .bind([REQUESTED, ATTEMPT_SENT])
        .bind(from - REQUEST_LOOKBACK)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        let mut due_at = std::collections::HashMap::new();
        let mut sent = Vec::new();
        for (kind, bytes, at) in &rows {
            let Ok((envelope, _)) = decode(Some(bytes)) else {
                continue;
            };
            match envelope.payload {
                Some(Payload::OutreachRequested(r)) => {
                    if let Some(due) = r.due_at.as_ref().and_then(instant) {
                        due_at.insert(r.attempt_id, due);
                    }
                }
                Some(Payload::AttemptSent(s)) if kind == ATTEMPT_SENT && *at >= from => {
                    sent.push((envelope.case_id, s.attempt_id, *at));
                }
                _ => {}
            }
        }
        Ok(sent
            .into_iter()
            .filter_map(|(case, attempt, at)| {
                // The due time on the services' clock, in real time.
                let due = self.due + (*due_at.get(&attempt)? - self.zero);
                Some((case, (at - due).num_milliseconds() as f64))
            })
            .collect())
    }

    /// When the last `AttemptSent` was recorded.
    async fn last_recorded(&self) -> anyhow::Result<DateTime<Utc>> {
        let last: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT max(recorded_at) FROM cases.timeline WHERE position > $1 AND kind = $2",
        )
        .bind(self.after)
        .bind(ATTEMPT_SENT)
        .fetch_one(&self.pool)
        .await?;
        Ok(last.unwrap_or(self.due))
    }
}

/// The mean size of an enrolment's stored state, in bytes of JSON, from a 1%
/// sample of the table's pages: a run per step is planned at enrolment, and each
/// attempt made adds to it, so cadence's statements that carry states grow with it.
async fn state_size(pool: &PgPool) -> anyhow::Result<f64> {
    let mean: Option<f64> = sqlx::query_scalar(
        "SELECT avg(octet_length(state::text))::float8
         FROM cadence.enrolments TABLESAMPLE SYSTEM (1)",
    )
    .fetch_one(pool)
    .await?;
    Ok(mean.unwrap_or(0.0))
}

fn print_minute(
    minute: i64,
    lags: &[(String, f64)],
    now: &[(String, ProcessUse)],
    state_bytes: f64,
) {
    let mut sorted: Vec<f64> = lags.iter().map(|(_, lag)| *lag).collect();
    sorted.sort_by(f64::total_cmp);
    let rss: Vec<String> = now
        .iter()
        .map(|(name, u)| format!("{name} {:.0}", u.rss_kib as f64 / 1024.0))
        .collect();
    println!(
        "soak: minute {minute:>2}: {:>6} attempts ({:>5.0}/s), lag p99 {:>5.0} ms; RSS MiB: {}; \
         enrolment state {:.1} KiB",
        lags.len(),
        lags.len() as f64 / 60.0,
        percentile(&sorted, 0.99),
        rss.join(", "),
        state_bytes / 1024.0
    );
}

/// Opens the load's cases with `openers` clients, patient `i` enrolled at
/// `zero` plus its offset, with a mobile and written SMS consent.
async fn open_cases(
    services: &Services,
    load: Load,
    openers: usize,
    zero: DateTime<Utc>,
    zone: &str,
) -> anyhow::Result<()> {
    let patients = load.patients();
    let peer = services.peer("cases")?;
    let opened = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for first in 0..openers {
        let peer = peer.clone();
        let zone = zone.to_owned();
        let opened = opened.clone();
        clients.spawn(async move {
            let mut cases = client(&peer).await?;
            for i in (first..patients).step_by(openers) {
                let patient = OpenArgs {
                    program: "load".into(),
                    language: Language::En,
                    time_zone: zone.clone(),
                    given: "Load".into(),
                    family: format!("Patient{i}"),
                    mobile: mobile(i),
                    email: String::new(),
                    consents: vec![Channel::Sms],
                    coordinator: String::new(),
                    navigator: String::new(),
                    request_id: Some(format!("load-{i}")),
                };
                open_with(&mut cases, &patient, zero + load.offset(i), "e2e-bench")
                    .await
                    .with_context(|| format!("patient {i}"))?;
                opened.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    let progress = {
        let opened = opened.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                println!(
                    "enrol: {} of {patients} cases opened",
                    opened.load(Ordering::Relaxed)
                );
            }
        })
    };
    let mut result = Ok(());
    while let Some(joined) = clients.join_next().await {
        if let Err(e) = joined.context("an opening client panicked").and_then(|r| r) {
            result = Err(e);
            clients.abort_all();
        }
    }
    progress.abort();
    result
}

/// A distinct valid US mobile for patient `i`: area code 212, exchanges 200-999.
fn mobile(i: usize) -> String {
    format!("+1212{:03}{:04}", 200 + (i / 10_000) % 800, i % 10_000)
}

/// Waits until cadence has planned `patients` enrolments and dispatch and
/// routing have projected as many cases.
async fn wait_until_taken_in(pool: &PgPool, patients: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let (planned, dispatch, routing): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM cadence.enrolments),
                    (SELECT count(*) FROM dispatch.case_views),
                    (SELECT count(*) FROM routing.case_views)",
        )
        .fetch_one(pool)
        .await?;
        if [planned, dispatch, routing]
            .iter()
            .all(|n| *n as usize >= patients)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after {SETTLE_LIMIT:?}: cadence planned {planned}, dispatch projected \
                 {dispatch}, routing {routing} of {patients}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Each service's memory and CPU time now.
fn usage(stack: &Stack) -> Vec<(String, ProcessUse)> {
    stack
        .pids()
        .into_iter()
        .filter_map(|(name, pid)| Some((name, bench::process_use(pid)?)))
        .collect()
}

/// CPU time used so far by each part of the run.
#[derive(Debug)]
struct Snapshot {
    at: Instant,
    services: Vec<(String, ProcessUse)>,
    tansu: f64,
    postgres: f64,
    this: f64,
    machine: f64,
}

impl Snapshot {
    fn take(stack: &Stack, services: &Services) -> Self {
        let broker = services
            .common
            .iter()
            .find(|(k, _)| k == "KAFKA_BROKERS")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let tansu = bench::pids_with_arg(&format!("tcp://{broker}"))
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == "tansu")
            })
            .filter_map(bench::process_use)
            .map(|u| u.cpu_seconds)
            .sum();
        Self {
            at: Instant::now(),
            services: usage(stack),
            tansu,
            postgres: bench::cpu_seconds_of_all("postgres"),
            this: bench::process_use(std::process::id()).map_or(0.0, |u| u.cpu_seconds),
            machine: bench::machine_busy_seconds().unwrap_or(0.0),
        }
    }

    fn print_split(&self, before: &Self) {
        let wall = (self.at - before.at).as_secs_f64();
        let machine = self.machine - before.machine;
        println!(
            "CPU during the run: {wall:.1} s wall, {machine:.1} CPU-s busy on the machine \
             ({:.0}% of its cores):",
            100.0 * machine / (wall * cores())
        );
        let mut named = 0.0;
        let mut line = |name: &str, seconds: f64| {
            named += seconds;
            println!(
                "  {name:<22} {seconds:>7.1} CPU-s  {:>4.0}%",
                100.0 * seconds / machine.max(f64::EPSILON)
            );
        };
        for (name, used) in &self.services {
            let earlier = before
                .services
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, u)| u.cpu_seconds);
            line(name, used.cpu_seconds - earlier);
        }
        line("tansu", self.tansu - before.tansu);
        line("postgresql", self.postgres - before.postgres);
        line("bench (SMS stand-in)", self.this - before.this);
        let other = machine - named;
        println!(
            "  {:<22} {other:>7.1} CPU-s  {:>4.0}%",
            "other",
            100.0 * other / machine.max(f64::EPSILON)
        );
    }
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn write_program(work: &std::path::Path, steps: usize) -> anyhow::Result<PathBuf> {
    let root = work.join("programs");
    let folder = root.join("load");
    std::fs::create_dir_all(folder.join("templates"))?;
    std::fs::write(folder.join("program.toml"), program(steps))?;
    std::fs::write(folder.join("templates").join("welcome.en.txt"), TEMPLATE)?;
    std::fs::write(
        folder.join("templates").join("welcome.caregiver.en.txt"),
        "A message from {{ program_name }}",
    )?;
    Ok(root)
}
