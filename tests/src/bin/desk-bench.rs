//! The desk's busiest pages under load: the worklist and the case page, and
//! the operations page over a year of daily figures for 20 programs.
//!
//! `cargo run --release -p touchpoint-tests --bin desk-bench -- [COORDINATORS] [TASKS] [CASES] [ENTRIES] [RATE] [SECONDS]`
//! (defaults 1000, 50, 1000, 1000, 50 and 30). Uses the test harness: a fresh
//! database on `DATABASE_URL`'s server and `KAFKA_BROKERS` or a Tansu broker.
//!
//! Loads CASES cases of ENTRIES timeline entries each into the cases schema
//! with bulk SQL, puts COORDINATORS coordinators on the roster over gRPC and
//! TASKS open tasks on each one's worklist (bulk SQL, on those cases), starts
//! the four services and the desk in this process, opens a session for every
//! coordinator, then requests `/work` and `/cases/{id}` at RATE a second each
//! for SECONDS (open loop: a slow answer does not slow the schedule), as
//! random coordinators, and `/operations?days=365` at a tenth of RATE as a
//! site leader of 20 programs whose year of daily KPI figures is loaded into
//! the projection's table. Reports each page's time as the desk measured it
//! (`Server-Timing`) and as the client saw it, and the database work the
//! pages caused (WAL bytes, rows written: sessions and the access log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use touchpoint_desk::store;
use touchpoint_desk::user::{Language as DeskLanguage, Role, User};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::config::Env;
use touchpoint_platform::db;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, WRITE_TOKEN};
use touchpoint_platform::vouch::{TrustedFronts, Voucher};
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;
use touchpoint_proto::v1::{
    Coordinator, CoordinatorRole, Language, Presence, Shift, UpsertCoordinatorRequest,
};
use touchpoint_tests::bench::percentile;
use touchpoint_tests::hub::Hub;
use touchpoint_tests::seed;

/// Tuesday 2027-01-05, 10:00 in New York.
const START: &str = "2027-01-05T15:00:00Z";
/// The operations page over a year, every program of the site leader's.
const OPERATIONS: &str = "/operations?days=365";

/// One request's result.
#[derive(Debug, Clone, Copy)]
struct Sample {
    server_ms: f64,
    client_ms: f64,
    bytes: usize,
    ok: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().with_context(|| format!("{a} is not a number")))
        .collect::<anyhow::Result<_>>()?;
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (coordinators, tasks_each, cases, entries, rate, seconds) = (
        arg(0, 1000),
        arg(1, 50),
        arg(2, 1000),
        arg(3, 1000),
        arg(4, 50),
        arg(5, 30),
    );
    if coordinators == 0 || cases == 0 || rate == 0 {
        bail!("coordinators, cases and rate must be above 0");
    }
    println!(
        "desk-bench: {coordinators} coordinators x {tasks_each} open tasks, {cases} cases x {entries} \
         timeline entries; /work and /cases/{{id}} at {rate}/s each for {seconds} s"
    );

    let (voucher, key) = Voucher::generate()?;
    let start = DateTime::parse_from_rfc3339(START)?.to_utc();
    let hub = Hub::start_trusting(
        ClockConfig::Fixed { at: start },
        TrustedFronts::of(vec![voucher.public_key_bytes()]),
    )
    .await;
    let schema = |name: &str| -> anyhow::Result<PgPool> {
        let options = db::connect_options(&hub.database.config(), name)?;
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options))
    };

    let loading = Instant::now();
    let case_ids =
        seed::cases_with_notes(&schema("cases")?, cases, entries as i64, "+1415").await?;
    println!(
        "loaded {cases} cases, {} timeline entries in {:.1} s",
        cases * entries,
        loading.elapsed().as_secs_f64()
    );
    // A year of daily KPI figures for 20 programs, for the operations page.
    let kpi_programs: Vec<String> = std::iter::once("adherence".to_owned())
        .chain((1..20).map(|i| format!("program-{i:02}")))
        .collect();
    let kpi_rows =
        seed::kpi_year(&schema("cases")?, &kpi_programs, start.date_naive(), 365).await?;
    println!(
        "loaded {kpi_rows} daily KPI figures: {} programs x 365 days",
        kpi_programs.len()
    );
    // The projection is current: the seeded history holds no figure to fold.
    sqlx::query(
        "UPDATE kpi_cursor SET (writer_xid, position) =
             (SELECT writer_xid, position FROM timeline ORDER BY writer_xid DESC, position DESC LIMIT 1)",
    )
    .execute(&schema("cases")?)
    .await?;
    let mut routing = RoutingServiceClient::new(testkit::channel(hub.routing).await);
    let ids: Vec<String> = (0..coordinators).map(|i| format!("coord-{i:04}")).collect();
    for id in &ids {
        routing
            .upsert_coordinator(UpsertCoordinatorRequest {
                coordinator: Some(coordinator(id)),
            })
            .await?;
    }
    let routing_db = schema("routing")?;
    sqlx::query(
        "INSERT INTO case_views (case_id, program_id, language) SELECT c, 'adherence', 'en'
         FROM UNNEST($1::text[]) AS c ON CONFLICT (case_id) DO NOTHING",
    )
    .bind(&case_ids)
    .execute(&routing_db)
    .await?;
    sqlx::query(
        "INSERT INTO tasks (task_id, kind, case_id, channel, member_id, priority, status,
             due_at, created_at)
         SELECT gen_random_uuid(),
                (ARRAY['inbound', 'callback', 'adverse_event_review', 'keyword_review'])[1 + t % 4],
                ($2::text[])[1 + ((m * $4 + t) % cardinality($2::text[]))],
                'CHANNEL_SMS', ($1::text[])[1 + m],
                CASE WHEN t % 4 = 2 THEN 100 ELSE 0 END, 'open',
                $3::timestamptz + (t || ' minutes')::interval, $3::timestamptz
         FROM generate_series(0, cardinality($1::text[]) - 1) AS m,
              generate_series(0, $4 - 1) AS t",
    )
    .bind(&ids)
    .bind(&case_ids)
    .bind(start)
    .bind(tasks_each as i32)
    .execute(&routing_db)
    .await?;
    for table in [
        "routing.tasks",
        "routing.case_views",
        "cases.timeline",
        "cases.cases",
        "cases.kpi_daily",
    ] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(&routing_db)
            .await?;
    }
    println!(
        "{} tasks on {coordinators} worklists; loading took {:.1} s in all",
        coordinators * tasks_each,
        loading.elapsed().as_secs_f64()
    );

    let key_file = std::env::temp_dir().join(format!("desk-bench-{}.key", uuid::Uuid::now_v7()));
    std::fs::write(&key_file, key)?;
    let cadence = hub.cadence.context("cadence is not running")?;
    let vars = [
        ("DATABASE_URL", hub.database.url.clone()),
        ("TOUCHPOINT_DESK_ADDR", "127.0.0.1:0".to_owned()),
        ("TOUCHPOINT_CASES_URL", format!("http://{}", hub.cases_addr)),
        ("TOUCHPOINT_CADENCE_URL", format!("http://{cadence}")),
        (
            "TOUCHPOINT_DISPATCH_URL",
            format!("http://{}", hub.dispatch),
        ),
        ("TOUCHPOINT_ROUTING_URL", format!("http://{}", hub.routing)),
        ("TOUCHPOINT_API_TOKEN", WRITE_TOKEN.to_owned()),
        ("TOUCHPOINT_DESK_DEV_LOGIN", "true".to_owned()),
        (
            "TOUCHPOINT_DESK_VOUCH_KEY_FILE",
            key_file.display().to_string(),
        ),
        ("TOUCHPOINT_CLOCK", "fixed".to_owned()),
        ("TOUCHPOINT_CLOCK_START", START.to_owned()),
    ];
    let config = touchpoint_desk::Config::from_env(&Env::from_pairs(
        vars.iter().map(|(k, v)| (*k, v.as_str())),
    ))?;
    let shutdown = Shutdown::new();
    let desk = touchpoint_desk::start(config, &shutdown).await?;
    let _ = std::fs::remove_file(&key_file);

    let desk_db = schema("desk")?;
    let mut cookies = Vec::with_capacity(coordinators);
    for id in &ids {
        let user = User::new(
            id,
            id,
            vec![Role::Coordinator],
            vec!["adherence".into()],
            DeskLanguage::En,
        )
        .context("a bench user id is not usable")?;
        cookies.push(store::open_session(&desk_db, &user, Utc::now()).await?);
    }
    // A site leader of all 20 programs, for the operations page over a year.
    let leader = User::new(
        "lead-1",
        "lead-1",
        vec![Role::SiteLeader],
        kpi_programs.clone(),
        DeskLanguage::En,
    )
    .context("the bench's site leader is not usable")?;
    let leader = Arc::new(store::open_session(&desk_db, &leader, Utc::now()).await?);
    let cookies = Arc::new(cookies);
    let case_ids = Arc::new(case_ids);

    // Warm the pools and caches.
    get(desk, OPERATIONS, &leader).await;
    for n in 0..20 {
        let cookie = &cookies[n % cookies.len()];
        get(desk, "/work", cookie).await;
        get(
            desk,
            &format!("/cases/{}", case_ids[n % case_ids.len()]),
            cookie,
        )
        .await;
    }

    let wal_before = wal_lsn(&desk_db).await?;
    let rows_before = rows_written(&desk_db).await?;
    let began = Instant::now();
    let total = rate * seconds;
    let mut requests = Vec::with_capacity(total * 2);
    for n in 0..total {
        let at = began + Duration::from_secs_f64(n as f64 / rate as f64);
        // A spread of users and cases from the request's number alone: no
        // shared generator, so the schedule stays exact.
        let who = (n * 7919) % cookies.len();
        let which = (n * 104_729) % case_ids.len();
        let worker = Arc::clone(&cookies);
        requests.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            ("work", get(desk, "/work", &worker[who]).await)
        }));
        // The operations page at a tenth of the rate: few site leaders.
        if n % 10 == 0 {
            let leader = Arc::clone(&leader);
            requests.push(tokio::spawn(async move {
                tokio::time::sleep_until((at + Duration::from_secs_f64(0.25 / rate as f64)).into())
                    .await;
                ("operations", get(desk, OPERATIONS, &leader).await)
            }));
        }
        let cookies = Arc::clone(&cookies);
        let case_ids = Arc::clone(&case_ids);
        requests.push(tokio::spawn(async move {
            tokio::time::sleep_until((at + Duration::from_secs_f64(0.5 / rate as f64)).into())
                .await;
            let path = format!("/cases/{}", case_ids[which]);
            (
                "case",
                get(desk, &path, &cookies[(who + 1) % cookies.len()]).await,
            )
        }));
    }
    let results: Vec<(&str, Sample)> = join_all(requests)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let elapsed = began.elapsed().as_secs_f64();
    let wal = wal_bytes_since(&desk_db, &wal_before).await?;
    let rows = rows_written(&desk_db).await? - rows_before;
    shutdown.trigger();

    println!(
        "\n{} requests in {elapsed:.1} s\n\n{:<12} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9}",
        results.len(),
        "page",
        "n",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "client p99",
        "KiB"
    );
    for page in ["work", "case", "operations"] {
        let samples: Vec<Sample> = results
            .iter()
            .filter(|(p, _)| *p == page)
            .map(|(_, s)| *s)
            .collect();
        let errors = samples.iter().filter(|s| !s.ok).count();
        let mut server: Vec<f64> = samples
            .iter()
            .filter(|s| s.ok)
            .map(|s| s.server_ms)
            .collect();
        let mut client: Vec<f64> = samples
            .iter()
            .filter(|s| s.ok)
            .map(|s| s.client_ms)
            .collect();
        server.sort_by(f64::total_cmp);
        client.sort_by(f64::total_cmp);
        let kib = samples.iter().map(|s| s.bytes).sum::<usize>() as f64
            / samples.len().max(1) as f64
            / 1024.0;
        let name = match page {
            "work" => "/work",
            "case" => "/cases/{id}",
            _ => "/operations",
        };
        println!(
            "{name:<12} {:>6} {errors:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>11.1} {kib:>9.1}",
            samples.len(),
            percentile(&server, 0.50),
            percentile(&server, 0.95),
            percentile(&server, 0.99),
            server.last().copied().unwrap_or_default(),
            percentile(&client, 0.99),
        );
    }
    println!(
        "\ndatabase work while measured (the whole server): {:.1} MiB WAL ({:.0} bytes a request); \
         {rows} rows written in the desk's schema (access log, session touches)",
        wal as f64 / (1024.0 * 1024.0),
        wal as f64 / results.len().max(1) as f64,
    );
    println!(
        "target: p99 <= 100 ms for /work and /cases/{{id}}, <= 200 ms for /operations \
         (365 days of 20 programs), at the server"
    );
    Ok(())
}

fn coordinator(id: &str) -> Coordinator {
    Coordinator {
        coordinator_id: id.into(),
        role: CoordinatorRole::Coordinator as i32,
        time_zone: "America/New_York".into(),
        program_ids: vec!["adherence".into()],
        languages: vec![Language::En as i32, Language::Es as i32],
        skills: vec![],
        capacity: 100,
        presence: Presence::Available as i32,
        shifts: (1..=7)
            .map(|weekday| Shift {
                weekday,
                start: "00:00".into(),
                end: "00:00".into(),
            })
            .collect(),
        open_tasks: 0,
        on_shift: false,
        updated_by: String::new(),
        dial_to: String::new(),
    }
}

/// `GET path` on the desk at `addr` with the session `cookie`, over a fresh
/// connection: the desk's `Server-Timing`, the client's time and the size.
async fn get(addr: std::net::SocketAddr, path: &str, cookie: &str) -> Sample {
    let started = Instant::now();
    let failed = Sample {
        server_ms: 0.0,
        client_ms: 0.0,
        bytes: 0,
        ok: false,
    };
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return failed;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: desk={cookie}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return failed;
    }
    let mut response = Vec::with_capacity(64 * 1024);
    if stream.read_to_end(&mut response).await.is_err() {
        return failed;
    }
    let client_ms = started.elapsed().as_secs_f64() * 1000.0;
    let text = String::from_utf8_lossy(&response);
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let ok = head.starts_with("HTTP/1.1 200");
    let server_ms = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("server-timing")
                .then(|| value.trim().strip_prefix("app;dur="))?
                .and_then(|ms| ms.parse().ok())
        })
        .unwrap_or(0.0);
    Sample {
        server_ms,
        client_ms,
        bytes: response.len(),
        ok,
    }
}

async fn wal_lsn(pool: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await?)
}

async fn wal_bytes_since(pool: &PgPool, lsn: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
            .bind(lsn)
            .fetch_one(pool)
            .await?,
    )
}

async fn rows_written(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
         FROM pg_stat_user_tables WHERE schemaname = 'desk'",
    )
    .fetch_one(pool)
    .await?)
}
